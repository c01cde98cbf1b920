// The only file that calls the C int16 kernels: coded blocks (small integer combinations of
// int8 row blocks, stored as int16) times int8 chunk planes of x, exactly, 2 bytes per element.
import SRCore
internal import CSRKernels

public enum Int16Kernel {
    /// Whether `a` × `x` can run here: an int16 plane, an int8 plane of the same padded width.
    static func applies(_ a: ChunkPlane, _ x: ChunkPlane) -> Bool {
        guard case .int16 = a.storage, case .int8 = x.storage else { return false }
        return a.rowStride == x.rowStride
    }

    /// A[rows] · Xᵀ exactly (rows.count × x.rows). Precondition: `applies(a, x)`.
    /// `level` forces an implementation (tests); nil uses the best this CPU has.
    static func product(_ a: ChunkPlane, _ x: ChunkPlane, rows: Range<Int>, level: Int? = nil) -> Matrix<Int64> {
        guard case .int16(let av) = a.storage, case .int8(let xv) = x.storage else {
            preconditionFailure("Int16Kernel.product needs an int16 plane and int8 vectors")
        }
        return VectorBatch.product(av, aStride: a.rowStride, rows: rows, xv, xStride: x.rowStride, vectors: x.rows,
                                   result: Int64.self) { a0, count, x0, y in
            if let level {
                srk_int16_gemv_at(Int32(level), a0, count, a.rowStride, x0, y)
            } else {
                srk_int16_gemv(a0, count, a.rowStride, x0, y)
            }
        }
    }
}
