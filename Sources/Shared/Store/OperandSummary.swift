// What per-job planning needs of a registered matrix, derived once (at `register`, or by the
// first job that asks) and kept beside it in the store: its shape and largest magnitude, and
// A's bound statistics for each partition used. A job then never reads or hashes A itself.
import SRCore
import Foundation

/// Shape and largest magnitude of a stored matrix (`<root>/derived/<digest>/summary.json`).
public struct OperandSummary: Sendable, Codable, Equatable {
    public var rows: Int
    public var columns: Int
    /// max |a_ij|: where fitted partitions put p_0.
    public var maxMagnitude: Double

    public init(rows: Int, columns: Int, maxMagnitude: Double) {
        self.rows = rows
        self.columns = columns
        self.maxMagnitude = maxMagnitude
    }
}

extension OperandStore {
    /// Partitions prepared at `register` unless told otherwise: m = 2 and 3 chunks of 6 bits
    /// (the defaults of `srproduce matvec`, int8 planes).
    public static let defaultPreparedChunkings: [(chunks: Int, bits: Int)] = [(2, 6), (3, 6)]

    func derivedDirectory(_ digest: String) -> String { "\(root)/derived/\(digest)" }

    static func key(_ partition: PartitionVector) -> String {
        partition.exponents.map(String.init).joined(separator: "_")
    }

    /// The summary of a stored matrix: read from the store, or computed from the matrix (read
    /// and verified once) and written for next time.
    public func summary(digest: String) throws(StoreError) -> OperandSummary {
        let path = "\(derivedDirectory(digest))/summary.json"
        if let data = FileManager.default.contents(atPath: path),
           let s = try? JSONDecoder().decode(OperandSummary.self, from: data), s.rows >= 1, s.columns >= 1,
           s.maxMagnitude.isFinite, s.maxMagnitude >= 0 {
            return s
        }
        let a = try load(digest: digest)
        let s = OperandSummary(rows: a.rows, columns: a.columns, maxMagnitude: a.maxMagnitude)
        try writeSummary(s, digest: digest)
        return s
    }

    /// A's bound statistics under `partition`: read from the store, or computed from the
    /// matrix (read and verified once) and written for next time.
    public func statistics(digest: String, partition: PartitionVector) throws(StoreError) -> ChunkedOperand.Statistics {
        let path = "\(derivedDirectory(digest))/statistics.\(Self.key(partition)).bin"
        if let data = FileManager.default.contents(atPath: path),
           let s = Self.decodeStatistics([UInt8](data), chunks: partition.chunkCount) {
            return s
        }
        return try prepare(try load(digest: digest), digest: digest, partitions: [partition])[0]
    }

    /// Makes sure A's statistics under `partition` are in the store (computing them from the
    /// matrix, read and verified once, if not); reads nothing else when they are.
    public func ensureStatistics(digest: String, partition: PartitionVector) throws(StoreError) {
        let path = "\(derivedDirectory(digest))/statistics.\(Self.key(partition)).bin"
        if FileManager.default.fileExists(atPath: path) { return }
        try prepare(try load(digest: digest), digest: digest, partitions: [partition])
    }

    /// A's statistics under `partition` if they were prepared; nil otherwise (never reads A).
    /// What the aggregator uses: it trusts the store, not the producer, for a registered matrix.
    public func preparedStatistics(digest: String, partition: PartitionVector) -> ChunkedOperand.Statistics? {
        guard Self.isDigest(digest) else { return nil }
        let path = "\(derivedDirectory(digest))/statistics.\(Self.key(partition)).bin"
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return Self.decodeStatistics([UInt8](data), chunks: partition.chunkCount)
    }

    /// Computes and stores the summary and the statistics of `matrix` (stored as `digest`)
    /// for each partition; returns the statistics in order.
    @discardableResult
    public func prepare(_ matrix: Matrix<Double>, digest: String, partitions: [PartitionVector]) throws(StoreError) -> [ChunkedOperand.Statistics] {
        try writeSummary(OperandSummary(rows: matrix.rows, columns: matrix.columns, maxMagnitude: matrix.maxMagnitude), digest: digest)
        var out: [ChunkedOperand.Statistics] = []
        for p in partitions {
            let s: ChunkedOperand.Statistics
            do {
                s = try ChunkedOperand(decomposing: matrix, partition: p).statistics
            } catch {
                throw StoreError(.invalidOperand, "the matrix cannot be split with partition \(p): \(error)")
            }
            try writeAtomically(Self.encode(s), to: "\(derivedDirectory(digest))/statistics.\(Self.key(p)).bin",
                                creating: derivedDirectory(digest))
            out.append(s)
        }
        return out
    }

    /// The fitted partitions `defaultPreparedChunkings` (or `chunkings`) give for `matrix`.
    public static func preparedPartitions(for matrix: Matrix<Double>,
                                          chunkings: [(chunks: Int, bits: Int)] = defaultPreparedChunkings) -> [PartitionVector] {
        chunkings.compactMap { try? PartitionVector.fitted(maxMagnitude: matrix.maxMagnitude, chunks: $0.chunks, bits: $0.bits) }
    }

    private func writeSummary(_ s: OperandSummary, digest: String) throws(StoreError) {
        let json: Data
        do { json = try JSONEncoder().encode(s) } catch { throw StoreError(.io, "cannot encode the summary of \(digest): \(error)") }
        try writeAtomically([UInt8](json), to: "\(derivedDirectory(digest))/summary.json", creating: derivedDirectory(digest))
    }

    static let statisticsMagic = Array("SRSTAT1\n".utf8)

    /// Magic, UInt32 LE chunks m and rows r, then Float64 LE planeRowL1 (m × r), planeRowMax
    /// (m × r), valueRowL1 (r).
    static func encode(_ s: ChunkedOperand.Statistics) -> [UInt8] {
        let m = s.planeRowL1.count, r = s.valueRowL1.count
        var out = statisticsMagic
        withUnsafeBytes(of: UInt32(m).littleEndian) { out += $0 }
        withUnsafeBytes(of: UInt32(r).littleEndian) { out += $0 }
        out.reserveCapacity(out.count + (2 * m + 1) * r * 8)
        for v in s.planeRowL1.joined() { withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 } }
        for v in s.planeRowMax.joined() { withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 } }
        for v in s.valueRowL1 { withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 } }
        return out
    }

    /// nil for anything but a complete, well-formed file for `chunks` chunks (recomputed then).
    static func decodeStatistics(_ b: [UInt8], chunks: Int) -> ChunkedOperand.Statistics? {
        let head = statisticsMagic.count + 8
        guard b.count >= head, Array(b[0..<statisticsMagic.count]) == statisticsMagic else { return nil }
        func u32(_ at: Int) -> Int { Int(UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24) }
        let m = u32(statisticsMagic.count), r = u32(statisticsMagic.count + 4)
        guard m == chunks, r >= 1, b.count == head + (2 * m + 1) * r * 8 else { return nil }
        let values = b.withUnsafeBytes { raw in
            (0..<((2 * m + 1) * r)).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: head + 8 * $0, as: UInt64.self))) }
        }
        guard values.allSatisfy({ $0.isFinite && $0 >= 0 }) else { return nil }
        return ChunkedOperand.Statistics(
            planeRowL1: (0..<m).map { Array(values[($0 * r)..<(($0 + 1) * r)]) },
            planeRowMax: (0..<m).map { Array(values[((m + $0) * r)..<((m + $0 + 1) * r)]) },
            valueRowL1: Array(values[(2 * m * r)...]))
    }
}
