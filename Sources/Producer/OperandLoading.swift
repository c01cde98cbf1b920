// Resolves `--matrix NAME|PATH.npy` into an operand: a registered matrix, or a file that is
// carried inline when small and registered automatically when not.
import Foundation
import SRCore
import SRFormats
import SRSubmission
import SRStore

enum OperandLoading {
    /// Whole matrices up to this size travel inline in the tasks when given as a file.
    static let inlineLimitBytes = 1 << 20

    /// A matrix a job can name: carried inline, or stored (digest and summary; its statistics
    /// come from the store once the partition is known — `statistics(for:)`).
    enum Reference {
        case inline(Matrix<Double>)
        case stored(digest: String, summary: OperandSummary)

        var rows: Int { switch self { case .inline(let m): m.rows; case .stored(_, let s): s.rows } }
        var columns: Int { switch self { case .inline(let m): m.columns; case .stored(_, let s): s.columns } }
        var maxMagnitude: Double { switch self { case .inline(let m): m.maxMagnitude; case .stored(_, let s): s.maxMagnitude } }

        /// The request's operand for partition `p`. A stored matrix's statistics for `p` are
        /// made sure to be in the store (prepared at register, or by an earlier job; computed
        /// once otherwise) — without reading them: the aggregator does.
        func operand(partition p: PartitionVector, store: OperandStore) throws -> MatVecRequest.Operand {
            switch self {
            case .inline(let m): return .inline(m)
            case .stored(let d, let s):
                try store.ensureStatistics(digest: d, partition: p)
                return .stored(digest: d, rows: s.rows, columns: s.columns)
            }
        }
    }

    /// A registered name or digest (never reads A), or a .npy file: inline when small,
    /// registered when not.
    static func matrix(_ reference: String, store: OperandStore) throws -> Reference {
        if reference == "-" || reference.hasSuffix(".npy") || FileManager.default.fileExists(atPath: reference) {
            let a = try readMatrix(reference)
            if a.elements.count * 8 <= inlineLimitBytes { return .inline(a) }
            let digest = try store.register(a, name: nil)
            return .stored(digest: digest, summary: try store.summary(digest: digest))
        }
        let digest = try store.resolve(reference)
        return .stored(digest: digest, summary: try store.summary(digest: digest))
    }

    static func vector(_ path: String) throws -> Matrix<Double> {
        try readMatrix(path)
    }

    /// A .npy file, or with "-" the .npy bytes on standard input: how an operand gets into a
    /// container that cannot see the caller's files (`docker compose run -T … --matrix - < A.npy`).
    static func readMatrix(_ path: String) throws -> Matrix<Double> {
        guard path == "-" else { return try Npy.readMatrix(contentsOf: path) }
        let bytes = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
        guard !bytes.isEmpty else { throw RunFailure("standard input is empty; pipe a .npy file into it, e.g. `--matrix - < A.npy`") }
        return try Npy.matrix(from: Npy.decode(bytes, source: "<stdin>"), source: "<stdin>")
    }
}
