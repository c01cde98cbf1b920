// Resolves `--matrix NAME|PATH.npy` into an operand: a registered matrix, or a file that is
// carried inline when small and registered automatically when not.
import Foundation
import SuccessiveRefinement

enum OperandLoading {
    /// Whole matrices up to this size travel inline in the tasks when given as a file.
    static let inlineLimitBytes = 1 << 20

    static func matrix(_ reference: String, store: OperandStore) throws -> MatVecRequest.Operand {
        if reference.hasSuffix(".npy") || FileManager.default.fileExists(atPath: reference) {
            let a = try Npy.readMatrix(contentsOf: reference)
            if a.elements.count * 8 <= inlineLimitBytes { return .inline(a) }
            let digest = try store.register(a, name: nil)
            return .stored(digest: digest, matrix: a)
        }
        let digest = try store.resolve(reference)
        return .stored(digest: digest, matrix: try store.load(digest: digest))
    }

    static func vector(_ path: String) throws -> Matrix<Double> {
        try Npy.readMatrix(contentsOf: path)
    }
}
