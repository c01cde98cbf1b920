// The only file that calls the C int8 kernels: exact int8 plane × int8 vector products that
// read one byte per chunk element (GEMV is memory-bound, so this is the speed-up).
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
        var out = [Int64](repeating: 0, count: rows.count * x.rows)
        var y = [Int32](repeating: 0, count: rows.count)
        av.withUnsafeBufferPointer { ap in
            xv.withUnsafeBufferPointer { xp in
                for b in 0..<x.rows {
                    y.withUnsafeMutableBufferPointer { yp in
                        let a0 = ap.baseAddress! + rows.lowerBound * a.rowStride
                        let x0 = xp.baseAddress! + b * x.rowStride
                        if let level {
                            srk_int8_gemv_at(Int32(level), a0, rows.count, a.rowStride, x0, yp.baseAddress!)
                        } else {
                            srk_int8_gemv(a0, rows.count, a.rowStride, x0, yp.baseAddress!)
                        }
                    }
                    for r in 0..<rows.count { out[r * x.rows + b] = Int64(y[r]) }
                }
            }
        }
        return Matrix(rows: rows.count, columns: x.rows, elements: out)
    }
}
