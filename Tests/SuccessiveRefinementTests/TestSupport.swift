// Helpers shared by the unit tests: a seeded generator and exact reference arithmetic that
// does not go through the code under test.
@testable import SRCore


/// A random matrix whose elements are k · 2^−fractionBits with |k| < 2^totalBits, so every
/// product of such matrices is exactly representable as an Int128 count of a known unit.
struct DyadicMatrix {
    let integers: [Int64]      // k, row-major
    let rows: Int, columns: Int
    let fractionBits: Int      // element = k · 2^−fractionBits

    init(rows: Int, columns: Int, totalBits: Int, fractionBits: Int, using g: inout SplitMix64) {
        let limit = Int64(1) << totalBits
        integers = (0..<(rows * columns)).map { _ in Int64.random(in: (-limit + 1)..<limit, using: &g) }
        self.rows = rows
        self.columns = columns
        self.fractionBits = fractionBits
    }

    var matrix: Matrix<Double> {
        Matrix(rows: rows, columns: columns,
               elements: integers.map { Double($0) * pow2(-fractionBits) })
    }
}

func pow2(_ e: Int) -> Double { Double(sign: .plus, exponent: e, significand: 1) }

/// The fixed-point value the full partition keeps of v, in units of 2^{p_n}: sign(v)·⌊|v|/2^{p_n}⌋.
/// Computed directly from v (no chunking), as the independent reference for exactness.
func truncatedUnits(_ v: Double, finestExponent pn: Int) -> Int128 {
    let scaled = (abs(v) * pow2(-pn)).rounded(.down)   // exact: power-of-two scaling, floor
    let magnitude = Int128(scaled)
    return v < 0 ? -magnitude : magnitude
}

/// Exact Σ_c a[k,c]·x[c,b] of integer matrices (row-major a: r×n, x: n×B) in Int128.
func exactIntegerProduct(_ a: [Int128], _ x: [Int128], rows: Int, inner: Int, count: Int) -> [Int128] {
    var out = [Int128](repeating: 0, count: rows * count)
    for k in 0..<rows {
        for b in 0..<count {
            var s: Int128 = 0
            for c in 0..<inner { s += a[k * inner + c] * x[c * count + b] }
            out[k * count + b] = s
        }
    }
    return out
}
