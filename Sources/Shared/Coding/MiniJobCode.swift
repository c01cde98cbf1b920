// The erasure code of a mini-job (the paper's "coded tasks", METHOD.md §4): the K row blocks of a
// chunk plane become N ≥ K coded blocks, and the products of any K of them with x determine the
// K block products exactly. Stragglers become erasures: the aggregator needs any K results.
//
// The code is systematic — coded block i < K *is* row block i, so with no straggler nothing is
// decoded — and its N − K parity blocks are integer combinations P_t = Σ_b t^b · B_b with the
// nodes t = 1, 2, …, N − K. The parity part is a Vandermonde matrix on positive nodes, which is
// totally positive: every square submatrix of it is nonsingular, so every K×K submatrix of the
// generator [I; V] is invertible over the integers. Chunk products are exact integers of known
// bound (< 2^60), so the decoder solves over the prime field 2^61 − 1 and reads the result back
// as a signed integer — exact, with none of the conditioning trouble of a floating-point
// Vandermonde solve. Coefficients are small integers, so parity blocks stay narrow integers
// (int16 for the usual K and chunk widths) and run on a SIMD kernel.
import SRCore

/// Why a code or a decode is refused.
public enum MiniJobCodeError: Error, Equatable, CustomStringConvertible {
    case invalidShape(String)
    case tooWide(String)
    case notEnoughResults(have: Int, need: Int)
    case resultLength(index: Int, expected: Int, got: Int)
    case singular

    public var description: String {
        switch self {
        case .invalidShape(let why), .tooWide(let why): why
        case .notEnoughResults(let have, let need):
            "a coded mini-job needs any \(need) of its results; \(have) arrived"
        case .resultLength(let index, let expected, let got):
            "coded result \(index) has \(got) values, expected \(expected)"
        case .singular:
            "the chosen coded results do not determine the block products (cannot happen for this code's generator; report it)"
        }
    }
}

/// A systematic (N, K) code over a mini-job's row blocks. Pure value type, no I/O.
public struct MiniJobCode: Sendable, Equatable, Hashable {
    /// Data blocks (row blocks of the plane): any `k` results decode the mini-job.
    public let k: Int
    /// Coded blocks (tasks) issued; `n − k` of them are parity.
    public let n: Int

    /// At most this many data blocks per mini-job: decoding is O(K²) per value.
    public static let maximumBlocks = 64
    /// At most this many parity blocks: node t's coefficients grow as t^(K−1).
    public static let maximumParity = 8
    /// Honest block products stay below this magnitude, so they are exact in the field.
    public static let productLimit: Int64 = 1 << 60

    /// The uncoded case: one task per row block, all needed.
    public static func uncoded(blocks: Int) -> MiniJobCode { MiniJobCode(unchecked: blocks, blocks) }

    public init(k: Int, n: Int) throws(MiniJobCodeError) {
        guard k >= 1, k <= Self.maximumBlocks else {
            throw .invalidShape("a coded mini-job needs 1…\(Self.maximumBlocks) row blocks, got \(k)")
        }
        guard n >= k, n - k <= Self.maximumParity else {
            throw .invalidShape("a coded mini-job issues K…K+\(Self.maximumParity) tasks for K = \(k), got \(n)")
        }
        // The largest coefficient is (n−k)^(k−1); keep every parity coefficient sum below 2^31.
        if n > k {
            var sum = 0.0, power = 1.0
            for _ in 0..<k { sum += power; power *= Double(n - k) }
            guard sum < 0x1p31 else {
                throw .tooWide("\(n - k) parity blocks over \(k) row blocks need coefficients up to \(n - k)^\(k - 1): use fewer, larger row blocks or less redundancy")
            }
        }
        self.init(unchecked: k, n)
    }

    private init(unchecked k: Int, _ n: Int) {
        self.k = k
        self.n = n
    }

    /// The code for redundancy Ω over `blocks` row blocks: N = ⌈Ω·K⌉.
    public init(redundancy omega: Double, blocks: Int) throws(MiniJobCodeError) {
        guard omega.isFinite, omega >= 1 else {
            throw .invalidShape("redundancy must be a number ≥ 1 (1 = uncoded), got \(omega)")
        }
        // ⌈Ω·K⌉, forgiving the rounding of Ω itself (1.5 × 4 must be 6, not 7).
        let coded = Int((omega * Double(blocks) - 1e-9).rounded(.up))
        try self.init(k: blocks, n: Swift.max(blocks, coded))
    }

    public var isCoded: Bool { n > k }

    /// g_{i,b}: the weight of row block b in coded block i (identity for i < K; (i−K+1)^b after).
    public func coefficient(_ i: Int, _ b: Int) -> Int64 {
        precondition(i >= 0 && i < n && b >= 0 && b < k)
        if i < k { return i == b ? 1 : 0 }
        var v: Int64 = 1
        for _ in 0..<b { v *= Int64(i - k + 1) }
        return v
    }

    /// Σ_b |g_{i,b}|: coded block i's elements are at most this times the plane's largest.
    public func coefficientSum(_ i: Int) -> Int64 {
        (0..<k).reduce(0) { $0 + coefficient(i, $1) }
    }

    /// Largest |element| of any coded block of a plane whose elements are at most `magnitude`.
    public func codedMagnitude(dataMagnitude magnitude: Int64) -> Int64 {
        (0..<n).map { coefficientSum($0) }.max()! * magnitude
    }

    // MARK: decoding

    /// Which results a decode uses: every systematic one present, then the lowest parity ones
    /// for the blocks missing. Nil when fewer than K results are available.
    public func selection(from available: Set<Int>) -> [Int]? {
        guard available.count >= k else { return nil }
        let data = (0..<k).filter(available.contains)
        let parity = (k..<n).filter(available.contains).prefix(k - data.count)
        return data.count + parity.count == k ? data + parity : nil
    }

    /// The K block products from any K (or more) coded results: `results[i]` is coded block
    /// i's product, all of one length. Exact when every true block product is below
    /// `productLimit` in magnitude (the caller's plan guarantees it).
    public func decode(_ results: [Int: [Int64]]) throws(MiniJobCodeError) -> [[Int64]] {
        guard let use = selection(from: Set(results.keys.filter { $0 >= 0 && $0 < n })) else {
            throw .notEnoughResults(have: results.count, need: k)
        }
        let length = results[use[0]]!.count
        for i in use where results[i]!.count != length {
            throw .resultLength(index: i, expected: length, got: results[i]!.count)
        }
        var out = [[Int64]](repeating: [], count: k)
        let missing = (0..<k).filter { results[$0] == nil }
        for b in 0..<k where results[b] != nil { out[b] = results[b]! }
        guard !missing.isEmpty else { return out }
        // Parity equations with the known blocks moved to the right-hand side:
        //   Σ_{b ∈ missing} g_{t,b} y_b = r_t − Σ_{b known} g_{t,b} y_b   (mod p)
        let parity = Array(use.dropFirst(k - missing.count))
        let m = missing.count
        var matrix = [[UInt64]](repeating: [UInt64](repeating: 0, count: m), count: m)
        var rhs = [[UInt64]](repeating: [UInt64](repeating: 0, count: length), count: m)
        for (row, t) in parity.enumerated() {
            for (col, b) in missing.enumerated() { matrix[row][col] = Mod61.of(coefficient(t, b)) }
            let r = results[t]!
            for e in 0..<length { rhs[row][e] = Mod61.of(r[e]) }
            for b in 0..<k where results[b] != nil {
                let g = Mod61.of(coefficient(t, b)), y = out[b]
                for e in 0..<length { rhs[row][e] = Mod61.sub(rhs[row][e], Mod61.mul(g, Mod61.of(y[e]))) }
            }
        }
        let solved = try Self.solve(&matrix, &rhs)
        for (col, b) in missing.enumerated() { out[b] = solved[col].map(Mod61.signed) }
        return out
    }

    /// Gauss–Jordan over the field: returns the solution rows (one per unknown).
    private static func solve(_ a: inout [[UInt64]], _ rhs: inout [[UInt64]]) throws(MiniJobCodeError) -> [[UInt64]] {
        let m = a.count
        for col in 0..<m {
            guard let pivot = (col..<m).first(where: { a[$0][col] != 0 }) else { throw .singular }
            a.swapAt(col, pivot)
            rhs.swapAt(col, pivot)
            let inv = Mod61.inverse(a[col][col])!
            for j in 0..<m { a[col][j] = Mod61.mul(a[col][j], inv) }
            for e in rhs[col].indices { rhs[col][e] = Mod61.mul(rhs[col][e], inv) }
            for row in 0..<m where row != col && a[row][col] != 0 {
                let f = a[row][col]
                for j in 0..<m { a[row][j] = Mod61.sub(a[row][j], Mod61.mul(f, a[col][j])) }
                for e in rhs[row].indices { rhs[row][e] = Mod61.sub(rhs[row][e], Mod61.mul(f, rhs[col][e])) }
            }
        }
        return rhs
    }

    // MARK: checking with redundancy

    /// Whether every result beyond the K a decode uses agrees with the decoded blocks: with
    /// more than K results the code's redundancy detects a wrong one (any single wrong result
    /// among K + 1 breaks an equation, since every K of the generator's rows are independent).
    public func isConsistent(_ results: [Int: [Int64]]) throws(MiniJobCodeError) -> Bool {
        let blocks = try decode(results)
        for (i, r) in results where i >= 0 && i < n {
            guard r.count == blocks[0].count else { return false }
            for e in r.indices {
                var acc: UInt64 = 0
                for b in 0..<k { acc = Mod61.add(acc, Mod61.mul(Mod61.of(coefficient(i, b)), Mod61.of(blocks[b][e]))) }
                if acc != Mod61.of(r[e]) { return false }
            }
        }
        return true
    }

    /// With at least K + 2 results of which at most one is wrong: the wrong one's index (nil if
    /// all agree or the culprit is not unique). Leaving out the wrong result makes the rest
    /// consistent; leaving out a good one leaves the wrong one among ≥ K + 1 — inconsistent.
    public func corruptedResult(_ results: [Int: [Int64]]) throws(MiniJobCodeError) -> Int? {
        guard results.count >= k + 2, try !isConsistent(results) else { return nil }
        var culprits: [Int] = []
        for i in results.keys.sorted() {
            var rest = results
            rest[i] = nil
            if try isConsistent(rest) { culprits.append(i) }
        }
        return culprits.count == 1 ? culprits[0] : nil
    }
}
