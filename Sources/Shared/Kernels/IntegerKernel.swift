// The exact fallback kernel in 64-bit integers, for chunk products too wide for float64.
// Also the portable baseline the later vectorised int8 kernels are measured against.
import SRCore

enum IntegerKernel {
    /// A[rows] · Xᵀ with Int64 accumulation (the caller guarantees no overflow: see
    /// ResolutionAccumulator's check n · 2^{w_a + w_x} < 2^63).
    static func product(_ a: ChunkPlane, _ x: ChunkPlane, rows: Range<Int>) -> Matrix<Int64> {
        let xs = x.widened()
        var out = [Int64](repeating: 0, count: rows.count * x.rows)
        switch a.storage {
        case .int8(let s): accumulate(s, a.rowStride, xs, x.rowStride, x.rows, a.columns, rows, &out)
        case .int16(let s): accumulate(s, a.rowStride, xs, x.rowStride, x.rows, a.columns, rows, &out)
        case .int32(let s): accumulate(s, a.rowStride, xs, x.rowStride, x.rows, a.columns, rows, &out)
        }
        return Matrix(rows: rows.count, columns: x.rows, elements: out)
    }

    private static func accumulate<T: BinaryInteger>(
        _ a: [T], _ aStride: Int, _ x: [Int64], _ xStride: Int, _ count: Int, _ n: Int,
        _ rows: Range<Int>, _ out: inout [Int64]
    ) {
        a.withUnsafeBufferPointer { ap in
            x.withUnsafeBufferPointer { xp in
                for (o, r) in rows.enumerated() {
                    let row = ap.baseAddress! + r * aStride
                    for b in 0..<count {
                        let v = xp.baseAddress! + b * xStride
                        var sum: Int64 = 0
                        for c in 0..<n { sum &+= Int64(row[c]) &* v[c] }
                        out[o * count + b] = sum
                    }
                }
            }
        }
    }
}

extension ChunkPlane {
    /// All elements (with padding) as Int64.
    func widened() -> [Int64] {
        switch storage {
        case .int8(let s): s.map(Int64.init)
        case .int16(let s): s.map(Int64.init)
        case .int32(let s): s.map(Int64.init)
        }
    }
}
