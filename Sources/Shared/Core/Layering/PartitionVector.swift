// The partitioning vector p = [p_0 > p_1 > … > p_n] of METHOD.md §2 and the exact
// sign-magnitude, truncate-toward-zero split of a real number into n integer chunks.

/// Integer exponents p_0 > p_1 > … > p_n that split a real v, |v| < 2^{p_0}, into n signed
/// integer chunks c_1…c_n, most significant first:
///
///     v ≈ Σ_i c_i · 2^{p_i},   |v − Σ_{i≤r} c_i · 2^{p_i}| < 2^{p_r}
///
/// Chunk i has w_i = p_{i−1} − p_i magnitude bits and the sign of v. Bits at or above 2^{p_0}
/// are never dropped: such a value is an error (the reference code wraps it silently).
public struct PartitionVector: Sendable, Hashable, CustomStringConvertible {
    /// p_0, p_1, …, p_n (strictly decreasing).
    public let exponents: [Int]

    /// The exponent range accepted: keeps every 2^p a normal Double with room for products.
    public static let exponentRange = -400...400

    /// The widest chunk supported (magnitude bits); chunk planes store chunks in at most 32 bits.
    public static let maximumChunkBits = 31

    /// A partition from explicit exponents p_0 > p_1 > … > p_n (n ≥ 1).
    public init(_ exponents: [Int]) throws(LayeringError) {
        guard exponents.count >= 2 else {
            throw LayeringError(.invalidPartition,
                "partition \(exponents) needs at least two exponents [p_0, p_1] (one chunk)")
        }
        for (k, e) in exponents.enumerated() where !Self.exponentRange.contains(e) {
            throw LayeringError(.invalidPartition,
                "partition \(exponents): exponent p_\(k) = \(e) is outside \(Self.exponentRange)")
        }
        for k in 1..<exponents.count {
            guard exponents[k - 1] > exponents[k] else {
                throw LayeringError(.invalidPartition,
                    "partition \(exponents) must be strictly decreasing, but p_\(k - 1) = \(exponents[k - 1]) ≤ p_\(k) = \(exponents[k])")
            }
            let width = exponents[k - 1] - exponents[k]
            guard width <= Self.maximumChunkBits else {
                throw LayeringError(.chunkTooWide,
                    "partition \(exponents): chunk \(k) has \(width) bits; at most \(Self.maximumChunkBits) are supported — split it into more chunks")
            }
        }
        self.exponents = exponents
    }

    /// m chunks of b bits each, below p_0: [p_0, p_0 − b, …, p_0 − m·b].
    public static func uniform(p0: Int, chunks m: Int, bits b: Int) throws(LayeringError) -> PartitionVector {
        guard m >= 1, b >= 1 else {
            throw LayeringError(.invalidPartition,
                "a uniform partition needs at least 1 chunk of at least 1 bit (got \(m) chunks of \(b) bits)")
        }
        return try PartitionVector((0...m).map { p0 - $0 * b })
    }

    /// m chunks of b bits with p_0 chosen from the data: the smallest p_0 with max|v| < 2^{p_0}.
    public static func fitted(maxMagnitude: Double, chunks m: Int, bits b: Int) throws(LayeringError) -> PartitionVector {
        try uniform(p0: smallestP0(above: maxMagnitude), chunks: m, bits: b)
    }

    /// The smallest integer p with |v| < 2^p for every |v| ≤ `maxMagnitude` (0 for all-zero data).
    public static func smallestP0(above maxMagnitude: Double) -> Int {
        guard maxMagnitude > 0, maxMagnitude.isFinite else { return 0 }
        // For a normal or subnormal double, exponent = floor(log2 v), exactly.
        return Int(maxMagnitude.exponent) + 1
    }

    /// n, the number of chunks.
    @inlinable
    public var chunkCount: Int { exponents.count - 1 }

    /// p_0: every value must satisfy |v| < 2^{p_0}.
    public var p0: Int { exponents[0] }

    /// The exponent of chunk `index` (0-based): chunk index k has weight 2^{p_{k+1}}.
    public func exponent(ofChunk index: Int) -> Int { exponents[index + 1] }

    /// Magnitude bits of chunk `index` (0-based): w = p_k − p_{k+1}.
    public func bits(ofChunk index: Int) -> Int { exponents[index] - exponents[index + 1] }

    /// The least significant exponent p_n: the truncation residual of the full split is < 2^{p_n}.
    public var finestExponent: Int { exponents[exponents.count - 1] }

    /// Total magnitude bits p_0 − p_n.
    public var totalBits: Int { exponents[0] - finestExponent }

    /// Largest |value| of any chunk index's integer: 2^w − 1.
    public func chunkMagnitudeLimit(ofChunk index: Int) -> Int64 { (Int64(1) << bits(ofChunk: index)) - 1 }

    /// Splits `value` into its chunks (most significant first), exactly.
    /// Throws when `value` is NaN/infinite or |value| ≥ 2^{p_0}.
    public func chunks(of value: Double) throws(LayeringError) -> [Int64] {
        var out = [Int64](repeating: 0, count: chunkCount)
        try split(value, into: &out, location: nil)
        return out
    }

    /// Splits `value` into `chunks` (count = chunkCount). `location` names the element in errors.
    /// Every step is exact in binary floating point: scaling by powers of two and removing the
    /// integer part never rounds, so this is the paper's arithmetic without approximation.
    /// Inlinable: SRNeural quantizes every weight and activation through it.
    @inlinable @inline(__always)
    package func split(_ value: Double, into chunks: inout [Int64], location: String?) throws(LayeringError) {
        guard value.isFinite else {
            throw LayeringError(.nonFiniteValue,
                "value \(value)\(location.map { " at \($0)" } ?? "") is not a finite number; partitions need finite data")
        }
        var u = Swift.abs(value).scaled(byPowerOfTwo: -exponents[0])
        guard u < 1 else {
            throw LayeringError(.valueOutOfRange,
                "value \(value)\(location.map { " at \($0)" } ?? "") is outside the range of partition \(exponents): |v| must be < 2^\(exponents[0]) = \(Double(1).scaled(byPowerOfTwo: exponents[0])). Choose p_0 ≥ \(Self.smallestP0(above: Swift.abs(value))) or let p_0 be fitted to the data")
        }
        let negative = value < 0
        for k in 0..<chunkCount {
            u = u.scaled(byPowerOfTwo: exponents[k] - exponents[k + 1])
            let whole = u.rounded(.down)
            u -= whole
            let c = Int64(whole)
            chunks[k] = negative ? -c : c
        }
    }

    /// The value represented by the first `count` chunks: Σ_{i<count} c_i · 2^{p_{i+1}}.
    public func reconstruct(_ chunks: [Int64], using count: Int? = nil) -> Double {
        let n = count ?? chunks.count
        var sum = 0.0
        for k in 0..<n { sum += Double(chunks[k]).scaled(byPowerOfTwo: exponents[k + 1]) }
        return sum
    }

    public var description: String { "\(exponents)" }
}

extension Double {
    /// self · 2^e, exact whenever the result is a normal number.
    @inlinable @inline(__always)
    package func scaled(byPowerOfTwo e: Int) -> Double {
        Double(sign: .plus, exponent: e, significand: self)
    }
}
