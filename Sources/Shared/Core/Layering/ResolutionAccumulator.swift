// Adds completed mini-jobs into an exact running sum and releases resolutions in order.

/// Accumulates the exact integer products A_i·X_j of one job and yields resolution ℓ as soon
/// as every mini-job of layers 0…ℓ has arrived (in any order). Sums are kept as Int128 in
/// units of 2^{p_n + q_n}, so the final resolution is the fixed-point one-shot product Ã·X̃
/// exactly, whatever the arrival order.
public struct ResolutionAccumulator: Sendable {
    public let schedule: LayerSchedule
    public let partitionA: PartitionVector
    public let partitionX: PartitionVector
    public let rows: Int
    public let vectors: Int
    let bounds: ErrorBoundModel?
    var units: [Int128]
    var arrived: Set<ChunkPair> = []
    /// Products of layers beyond the next resolution, held back so that resolution ℓ is
    /// exactly layers 0…ℓ even when later mini-jobs arrive first.
    var pending: [ChunkPair: Matrix<Int64>] = [:]
    /// Number of resolutions released so far.
    public private(set) var released = 0

    /// Checks that the exact sums fit: each mini-job's products must fit Int64 and the whole
    /// sum Int128. `innerDimension` is n (A's columns).
    public init(schedule: LayerSchedule, partitionA: PartitionVector, partitionX: PartitionVector,
                rows: Int, vectors: Int, innerDimension n: Int,
                bounds: ErrorBoundModel?) throws(LayeringError) {
        guard schedule.chunksA == partitionA.chunkCount, schedule.chunksX == partitionX.chunkCount else {
            throw LayeringError(.shapeMismatch, "the schedule is for \(schedule.chunksA)×\(schedule.chunksX) chunks but the partitions have \(partitionA.chunkCount) and \(partitionX.chunkCount)")
        }
        let logN = n <= 1 ? 0 : Int.bitWidth - (n - 1).leadingZeroBitCount
        let widestPair = (0..<partitionA.chunkCount).map(partitionA.bits(ofChunk:)).max()!
            + (0..<partitionX.chunkCount).map(partitionX.bits(ofChunk:)).max()!
        guard logN + widestPair <= 63 else {
            throw LayeringError(.notExact, "a mini-job sums \(n) products of up to \(widestPair) bits, which can overflow 64-bit integers; use narrower chunks (more chunks, fewer bits each)")
        }
        guard logN + partitionA.totalBits + partitionX.totalBits <= 126 else {
            throw LayeringError(.notExact, "the exact product needs \(logN + partitionA.totalBits + partitionX.totalBits) bits (> 126); use fewer total bits in the partitions")
        }
        if let bounds { precondition(bounds.rows == rows && bounds.vectors == vectors) }
        self.schedule = schedule
        self.partitionA = partitionA
        self.partitionX = partitionX
        self.rows = rows
        self.vectors = vectors
        self.bounds = bounds
        self.units = [Int128](repeating: 0, count: rows * vectors)
    }

    /// The exponent of one unit of the running sum: p_n + q_n.
    public var unitExponent: Int { partitionA.finestExponent + partitionX.finestExponent }

    /// True once every mini-job has been added.
    public var isComplete: Bool { released == schedule.resolutionCount }

    /// Whether `pair`'s product has already been added.
    public func contains(_ pair: ChunkPair) -> Bool { arrived.contains(pair) }

    /// Adds the exact product A_i·X_j (rows × vectors) and returns every resolution that became
    /// complete, in order. A pair that was already added is an error (callers de-duplicate).
    public mutating func add(_ pair: ChunkPair, product: Matrix<Int64>) throws(LayeringError) -> [Resolution] {
        guard product.rows == rows, product.columns == vectors else {
            throw LayeringError(.shapeMismatch, "mini-job \(pair) has shape \(product.rows)×\(product.columns), expected \(rows)×\(vectors)")
        }
        guard schedule.layer(of: pair) != nil else {
            throw LayeringError(.invalidSchedule, "mini-job \(pair) is not part of the schedule \(schedule)")
        }
        guard arrived.insert(pair).inserted else {
            throw LayeringError(.duplicateMiniJob, "mini-job \(pair) was already added")
        }
        pending[pair] = product
        var out: [Resolution] = []
        while released < schedule.resolutionCount,
              schedule.layers[released].allSatisfy(arrived.contains) {
            for p in schedule.layers[released] { fold(p, pending.removeValue(forKey: p)!) }
            out.append(resolution(index: released))
            released += 1
        }
        return out
    }

    mutating func fold(_ pair: ChunkPair, _ product: Matrix<Int64>) {
        let shift = partitionA.exponent(ofChunk: pair.a) + partitionX.exponent(ofChunk: pair.x) - unitExponent
        product.elements.withUnsafeBufferPointer { p in
            for e in 0..<units.count { units[e] += Int128(p[e]) << shift }
        }
    }

    /// `v` rounded to the nearest Double. The generic Int128 conversion is slow; values that
    /// fit 64 bits (almost all) take the hardware conversion, which rounds the same way.
    @inlinable @inline(__always)
    package static func double(_ v: Int128) -> Double {
        if let small = Int64(exactly: v) { return Double(small) }
        return Double(v)
    }

    /// The current running sum as resolution `index` (every layer ≤ index must have arrived).
    func resolution(index: Int) -> Resolution {
        let e = unitExponent
        let values = Matrix(rows: rows, columns: vectors,
                            elements: units.map { Self.double($0).scaled(byPowerOfTwo: e) })
        let remaining = schedule.layers[(index + 1)...].joined()
        let bound = bounds?.bound(remaining: remaining, values: values)
            ?? Matrix(rows: rows, columns: vectors, repeating: Double.infinity)
        return Resolution(index: index, count: schedule.resolutionCount, units: units,
                          unitExponent: e, values: values, bound: bound)
    }
}
