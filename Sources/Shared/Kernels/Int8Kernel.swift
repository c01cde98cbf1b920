// The only file that calls the C int8 kernels: exact int8 plane × int8 vector products that
// read one byte per chunk element (GEMV is memory-bound, so this is the speed-up).
import SRCore
internal import CSRKernels

public enum Int8Kernel {
    /// The instruction set in use: "AVX-512 VNNI", "AVX-512BW", "AVX2" or "portable C".
    public static var instructionSet: String {
        ["portable C", "AVX2", "AVX-512BW", "AVX-512 VNNI"][Int(srk_int8_level())]
    }

    /// Largest row stride for which 32-bit sums are exact: stride · 255 · 127 < 2^31.
    static let maximumStride = 66_000

    /// Whether `a` × `x` can run here: both int8 planes of the same padded width.
    static func applies(_ a: ChunkPlane, _ x: ChunkPlane) -> Bool {
        guard case .int8 = a.storage, case .int8 = x.storage else { return false }
        return a.rowStride == x.rowStride && a.rowStride <= maximumStride
    }

    /// A[rows] · Xᵀ exactly (rows.count × x.rows). Precondition: `applies(a, x)`.
    /// `level` forces an implementation (tests); nil uses the best this CPU has.
    static func product(_ a: ChunkPlane, _ x: ChunkPlane, rows: Range<Int>, level: Int? = nil) -> Matrix<Int64> {
        guard case .int8(let av) = a.storage, case .int8(let xv) = x.storage else {
            preconditionFailure("Int8Kernel.product needs int8 planes")
        }
        return VectorBatch.product(av, aStride: a.rowStride, rows: rows, xv, xStride: x.rowStride, vectors: x.rows,
                                   result: Int32.self) { a0, count, x0, y in
            if let level {
                srk_int8_gemv_at(Int32(level), a0, count, a.rowStride, x0, y)
            } else {
                srk_int8_gemv(a0, count, a.rowStride, x0, y)
            }
        }
    }
}
