// One operand of a network (a weight tensor, a bias or an input sample) split into R integer
// chunks by its partition vector, and its exact value after any number of upgrades.
import SRCore

/// A tensor split exactly into chunks: element e ≈ Σ_k chunks[k][e] · 2^{p_{k+1}}.
/// Values are handled as integers in units of 2^{p_n} (`unitExponent`), the same unit at every
/// resolution, so that sums and differences across resolutions need no rescaling.
public struct QuantizedTensor: Sendable, Equatable {
    /// The most chunk bits in total: units of 2^{p_n} must fit Int64 with a bit to spare.
    public static let maximumTotalBits = 62

    public let shape: [Int]
    public let partition: PartitionVector
    /// chunks[k][e]: chunk k (0-based, most significant first) of element e (C order).
    /// Int32 suffices: a chunk has at most `PartitionVector.maximumChunkBits` = 31 bits.
    public let chunks: [[Int32]]

    /// Splits `values` (C order over `shape`). `name` labels errors. Throws `LayeringError`
    /// for a value outside the partition's range and `RefinementError` for a partition too fine.
    public init(values: [Double], shape: [Int], partition: PartitionVector, name: String) throws {
        guard shape.reduce(1, *) == values.count else {
            throw RefinementError(.shapeMismatch,
                "\(name): shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        }
        guard partition.totalBits <= Self.maximumTotalBits else {
            throw RefinementError(.invalidPartition,
                "\(name): partition \(partition) has \(partition.totalBits) bits; at most \(Self.maximumTotalBits) are supported — use fewer resolutions or fewer bits per upgrade")
        }
        let n = partition.chunkCount
        let count = values.count
        // Fast path (consumers split every sample of every task): multiplying by an exact power
        // of two is exact for normal results — the same arithmetic as `PartitionVector.split`,
        // which handles (and names) anything else below.
        let exponents = partition.exponents
        let top = Double(sign: .plus, exponent: -exponents[0], significand: 1)
        let steps = (0..<n).map { Double(sign: .plus, exponent: exponents[$0] - exponents[$0 + 1], significand: 1) }
        var flat = [Int32](repeating: 0, count: n * count)   // chunk-major
        flat.withUnsafeMutableBufferPointer { out in
            values.withUnsafeBufferPointer { input in
                for e in 0..<count {
                    let v = input[e]
                    var u = Swift.abs(v) * top
                    guard v.isFinite, u < 1, v == 0 || u >= 0x1p-1000 else { continue }
                    for k in 0..<n {
                        u *= steps[k]
                        let whole = u.rounded(.down)
                        u -= whole
                        out[k * count + e] = Int32(v < 0 ? -whole : whole)
                    }
                }
            }
        }
        var planes = (0..<n).map { Array(flat[($0 * count)..<(($0 + 1) * count)]) }
        var buffer = [Int64](repeating: 0, count: n)
        // Anything the fast path skipped: the reference split, which throws a named error.
        for (e, v) in values.enumerated() {
            let u = Swift.abs(v) * top
            guard !(v.isFinite && u < 1 && (v == 0 || u >= 0x1p-1000)) else { continue }
            do {
                try partition.split(v, into: &buffer, location: nil)
            } catch {
                try partition.split(v, into: &buffer, location: "\(name)\(Self.index(e, in: shape))")
            }
            for k in 0..<n { planes[k][e] = Int32(buffer[k]) }
        }
        self.shape = shape
        self.partition = partition
        self.chunks = planes
    }

    /// Splits a float tensor (every Float is exactly a Double).
    public init(_ tensor: Tensor, partition: PartitionVector, name: String) throws {
        try self.init(values: tensor.values.map(Double.init), shape: tensor.shape,
                      partition: partition, name: name)
    }

    /// R, the number of chunks (= resolutions).
    public var resolutions: Int { partition.chunkCount }

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// p_n: every value at every resolution is an integer multiple of 2^{p_n}.
    public var unitExponent: Int { partition.finestExponent }

    /// The value after r upgrades, Σ_{k<r} c_k · 2^{p_{k+1} − p_n}, in units of 2^{p_n}.
    /// |units| < 2^{p_0 − p_n} ≤ 2^62, and |units at r| ≤ |units at R| (all chunks share the
    /// sign of the value). O(count · r).
    public func units(atResolution r: Int) -> [Int64] {
        precondition((0...resolutions).contains(r), "resolution \(r) outside 0…\(resolutions)")
        var out = [Int64](repeating: 0, count: count)
        for k in 0..<r {
            let shift = partition.exponent(ofChunk: k) - unitExponent
            chunks[k].withUnsafeBufferPointer { c in
                for e in 0..<out.count { out[e] += Int64(c[e]) << shift }
            }
        }
        return out
    }

    /// What upgrade r (1…R) adds, c_{r−1} · 2^{p_r − p_n}, in units of 2^{p_n}. O(count).
    public func increment(atResolution r: Int) -> [Int64] {
        precondition((1...resolutions).contains(r), "upgrade \(r) outside 1…\(resolutions)")
        let shift = partition.exponent(ofChunk: r - 1) - unitExponent
        return chunks[r - 1].map { Int64($0) << shift }
    }

    /// "[i, j, …]" for element e of a tensor of `shape`, for error messages.
    static func index(_ e: Int, in shape: [Int]) -> String {
        var rest = e
        var parts = [Int](repeating: 0, count: shape.count)
        for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] > 0 {
            parts[d] = rest % shape[d]
            rest /= shape[d]
        }
        return "[\(parts.map(String.init).joined(separator: ", "))]"
    }
}
