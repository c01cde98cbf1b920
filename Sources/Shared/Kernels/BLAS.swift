// The only file that calls OpenBLAS: typed, bounds-checked wrappers over the CBLAS calls
// the kernels use. C types stay in this file.
internal import CSRBLAS

/// OpenBLAS entry points, row-major. Blocking calls: run them on a thread meant for
/// blocking work (a consumer's worker thread), never on Swift's cooperative pool.
public enum BLAS {
    /// Sets OpenBLAS's thread count. Consumers run one BLAS thread each (parallelism comes
    /// from replicas); benchmarks pin it so ratios compare like with like.
    public static func setThreadCount(_ n: Int) {
        csrblas_set_num_threads(Int32(clamping: n))
    }

    /// OpenBLAS's current thread count.
    public static var threadCount: Int { Int(csrblas_get_num_threads()) }

    static func checkDimensions(_ values: Int...) {
        for v in values {
            // blasint is 32-bit in Debian's OpenBLAS.
            precondition(v >= 0 && v <= Int(Int32.max), "dimension \(v) exceeds OpenBLAS's 32-bit blasint")
        }
    }

    /// y = A·x for A (rows × cols, leading dimension lda).
    static func gemv(rows: Int, cols: Int, a: UnsafePointer<Float>, lda: Int,
                     x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        checkDimensions(rows, cols, lda)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(rows), Int32(cols), 1, a, Int32(lda), x, 1, 0, y, 1)
    }

    static func gemv(rows: Int, cols: Int, a: UnsafePointer<Double>, lda: Int,
                     x: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>) {
        checkDimensions(rows, cols, lda)
        cblas_dgemv(CblasRowMajor, CblasNoTrans, Int32(rows), Int32(cols), 1, a, Int32(lda), x, 1, 0, y, 1)
    }

    /// C (rows × count) = A (rows × inner, lda) · Bᵀ where B is stored count × inner (ldb):
    /// the layout of a vector batch (one vector per row).
    package static func gemmTransposedB(rows: Int, count: Int, inner: Int, a: UnsafePointer<Float>, lda: Int,
                                b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>) {
        checkDimensions(rows, count, inner, lda, ldb)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(count), Int32(inner),
                    1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(count))
    }

    package static func gemmTransposedB(rows: Int, count: Int, inner: Int, a: UnsafePointer<Double>, lda: Int,
                                b: UnsafePointer<Double>, ldb: Int, c: UnsafeMutablePointer<Double>) {
        checkDimensions(rows, count, inner, lda, ldb)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(count), Int32(inner),
                    1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(count))
    }
}

// MARK: - Neural network training and evaluation

extension BLAS {
    /// C (m × n, ldc) = alpha · op(A) · op(B) + beta · C, row-major, where op(A) is m × k and
    /// op(B) is k × n. Backpropagation needs both transposes and beta = 1 to accumulate gradients.
    package static func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        checkDimensions(m, n, k, lda, ldb, ldc)
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
