// The batch loop shared by the SIMD kernels: a C kernel multiplies rows of a plane by one
// vector; a batch of B vectors is B calls, gathered into a (rows × B) matrix of Int64.
import SRCore

enum VectorBatch {
    /// A[rows] · Xᵀ for every vector of `x` (rows of `xStride` int8 elements), one
    /// `kernel(a0, rowCount, x0, y)` call per vector.
    static func product<A, Y: BinaryInteger>(
        _ a: [A], aStride: Int, rows: Range<Int>, _ x: [Int8], xStride: Int, vectors: Int, result: Y.Type,
        _ kernel: (UnsafePointer<A>, Int, UnsafePointer<Int8>, UnsafeMutablePointer<Y>) -> Void
    ) -> Matrix<Int64> {
        var out = [Int64](repeating: 0, count: rows.count * vectors)
        var y = [Y](repeating: 0, count: rows.count)
        a.withUnsafeBufferPointer { ap in
            x.withUnsafeBufferPointer { xp in
                for b in 0..<vectors {
                    y.withUnsafeMutableBufferPointer { yp in
                        kernel(ap.baseAddress! + rows.lowerBound * aStride, rows.count, xp.baseAddress! + b * xStride, yp.baseAddress!)
                    }
                    for r in 0..<rows.count { out[r * vectors + b] = Int64(y[r]) }
                }
            }
        }
        return Matrix(rows: rows.count, columns: vectors, elements: out)
    }
}
