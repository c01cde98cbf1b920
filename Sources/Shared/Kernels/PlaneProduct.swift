// The mini-job kernel: the exact integer product of a chunk plane of A with chunk planes of x.
import SRCore

extension PreparedPlane {
    /// The exact product A_i[rows] · X_jᵀ for the vector batch `vectors` (B plane rows of
    /// length n): a (rows.count × B) matrix of integers. `rows` selects a row block of A.
    ///
    /// Precondition: `vectors.columns == plane.columns` and every |element| of `vectors`
    /// ≤ `partnerMagnitude` (checked: a larger one falls back to the integer path).
    public func product(_ vectors: ChunkPlane, rows: Range<Int>? = nil) -> Matrix<Int64> {
        precondition(vectors.columns == plane.columns,
                     "chunk product needs x of length \(plane.columns), got \(vectors.columns)")
        let rows = rows ?? 0..<plane.rows
        precondition(rows.lowerBound >= 0 && rows.upperBound <= plane.rows)
        // A batch with larger chunks than prepared for can only use a wider path than `path`
        // if that path's copy exists; otherwise fall back to exact integers.
        if path == .int8SIMD, Int8Kernel.applies(plane, vectors) {
            return Int8Kernel.product(plane, vectors, rows: rows)
        }
        if path == .int16SIMD, Int16Kernel.applies(plane, vectors), vectors.maxMagnitude <= 127 {
            return Int16Kernel.product(plane, vectors, rows: rows)
        }
        let needed = Self.path(columns: plane.columns, magnitude: plane.maxMagnitude,
                               partnerMagnitude: vectors.maxMagnitude)
        let effective = needed.rank <= path.rank && path.rank > 0 ? path : .integer
        switch effective {
        case .float32BLAS:
            return blasProduct(float32, vectors.converted(to: Float.self), rows: rows, count: vectors.rows)
        case .float64BLAS:
            return blasProduct(float64, vectors.converted(to: Double.self), rows: rows, count: vectors.rows)
        case .integer, .int8SIMD, .int16SIMD:
            return IntegerKernel.product(plane, vectors, rows: rows)
        }
    }

    private func blasProduct(_ a: [Float], _ x: [Float], rows: Range<Int>, count: Int) -> Matrix<Int64> {
        let stride = plane.rowStride, n = plane.columns
        var y = [Float](repeating: 0, count: rows.count * count)
        a.withUnsafeBufferPointer { ap in
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    let a0 = ap.baseAddress! + rows.lowerBound * stride
                    if count == 1 {
                        BLAS.gemv(rows: rows.count, cols: n, a: a0, lda: stride, x: xp.baseAddress!, y: yp.baseAddress!)
                    } else {
                        BLAS.gemmTransposedB(rows: rows.count, count: count, inner: n, a: a0, lda: stride,
                                             b: xp.baseAddress!, ldb: stride, c: yp.baseAddress!)
                    }
                }
            }
        }
        return Matrix(rows: rows.count, columns: count, elements: y.map { Int64($0) })
    }

    private func blasProduct(_ a: [Double], _ x: [Double], rows: Range<Int>, count: Int) -> Matrix<Int64> {
        let stride = plane.rowStride, n = plane.columns
        var y = [Double](repeating: 0, count: rows.count * count)
        a.withUnsafeBufferPointer { ap in
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    let a0 = ap.baseAddress! + rows.lowerBound * stride
                    if count == 1 {
                        BLAS.gemv(rows: rows.count, cols: n, a: a0, lda: stride, x: xp.baseAddress!, y: yp.baseAddress!)
                    } else {
                        BLAS.gemmTransposedB(rows: rows.count, count: count, inner: n, a: a0, lda: stride,
                                             b: xp.baseAddress!, ldb: stride, c: yp.baseAddress!)
                    }
                }
            }
        }
        return Matrix(rows: rows.count, columns: count, elements: y.map { Int64($0) })
    }
}
