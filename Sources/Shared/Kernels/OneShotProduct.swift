// The baseline every benchmark compares against: the whole product in one floating-point pass.
import SRCore

/// A·X in float32 or float64 through BLAS, as an ordinary (non-layered) job would compute it.
public enum OneShotProduct {
    /// A (r × n) · X (n × B) in the precision of `F` (Float → sgemv/sgemm, Double → dgemv/dgemm).
    public static func product(_ a: Matrix<Float>, _ x: Matrix<Float>) -> Matrix<Float> {
        precondition(a.columns == x.rows, "A·X needs A's columns (\(a.columns)) = X's rows (\(x.rows))")
        let xt = x.columns == 1 ? x.elements : x.transposed().elements
        var y = [Float](repeating: 0, count: a.rows * x.columns)
        a.elements.withUnsafeBufferPointer { ap in
            xt.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    if x.columns == 1 {
                        BLAS.gemv(rows: a.rows, cols: a.columns, a: ap.baseAddress!, lda: a.columns,
                                  x: xp.baseAddress!, y: yp.baseAddress!)
                    } else {
                        BLAS.gemmTransposedB(rows: a.rows, count: x.columns, inner: a.columns,
                                             a: ap.baseAddress!, lda: a.columns, b: xp.baseAddress!,
                                             ldb: a.columns, c: yp.baseAddress!)
                    }
                }
            }
        }
        return Matrix(rows: a.rows, columns: x.columns, elements: y)
    }

    public static func product(_ a: Matrix<Double>, _ x: Matrix<Double>) -> Matrix<Double> {
        precondition(a.columns == x.rows, "A·X needs A's columns (\(a.columns)) = X's rows (\(x.rows))")
        let xt = x.columns == 1 ? x.elements : x.transposed().elements
        var y = [Double](repeating: 0, count: a.rows * x.columns)
        a.elements.withUnsafeBufferPointer { ap in
            xt.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    if x.columns == 1 {
                        BLAS.gemv(rows: a.rows, cols: a.columns, a: ap.baseAddress!, lda: a.columns,
                                  x: xp.baseAddress!, y: yp.baseAddress!)
                    } else {
                        BLAS.gemmTransposedB(rows: a.rows, count: x.columns, inner: a.columns,
                                             a: ap.baseAddress!, lda: a.columns, b: xp.baseAddress!,
                                             ldb: a.columns, c: yp.baseAddress!)
                    }
                }
            }
        }
        return Matrix(rows: a.rows, columns: x.columns, elements: y)
    }

    /// Rows `rows` of A (r × n, float32) times the vectors `xt` given vector-major (B × n):
    /// the one-shot task of a consumer. Returns rows.count × B, row-major.
    public static func product(_ a: Matrix<Float>, rows: Range<Int>, vectorsTransposed xt: [Float], count: Int) -> [Float] {
        precondition(xt.count == count * a.columns && rows.upperBound <= a.rows)
        var y = [Float](repeating: 0, count: rows.count * count)
        a.elements.withUnsafeBufferPointer { ap in
            xt.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    let a0 = ap.baseAddress! + rows.lowerBound * a.columns
                    if count == 1 {
                        BLAS.gemv(rows: rows.count, cols: a.columns, a: a0, lda: a.columns, x: xp.baseAddress!, y: yp.baseAddress!)
                    } else {
                        BLAS.gemmTransposedB(rows: rows.count, count: count, inner: a.columns, a: a0, lda: a.columns,
                                             b: xp.baseAddress!, ldb: a.columns, c: yp.baseAddress!)
                    }
                }
            }
        }
        return y
    }
}
