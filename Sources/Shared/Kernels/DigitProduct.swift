// The only Swift caller of the C digit GEMM: exact V·Wᵀ of wide integers from int8 digit
// plane products (32-bit accumulation, recombined with shifts into Int128).
internal import CSRKernels

package enum DigitProduct {
    /// Where output element (row i, column j) goes: out[(i / groupRows)·groupStride +
    /// (i % groupRows)·rowStride + j·columnStride]. Row-major is (rows, rows, columns, 1);
    /// a convolution writes [sample, channel, pixel] with (pixels, channels·pixels, 1, pixels).
    package struct Layout: Sendable {
        package var groupRows: Int, groupStride: Int, rowStride: Int, columnStride: Int
        package init(groupRows: Int, groupStride: Int, rowStride: Int, columnStride: Int) {
            (self.groupRows, self.groupStride, self.rowStride, self.columnStride) = (groupRows, groupStride, rowStride, columnStride)
        }
        package static func rowMajor(rows: Int, columns: Int) -> Layout {
            Layout(groupRows: max(rows, 1), groupStride: 0, rowStride: columns, columnStride: 1)
        }
    }

    /// The implementation a level request runs (nil: the best this CPU has): 0 portable C,
    /// 1 AVX2, 2 AVX-512BW (runs the AVX2 kernel), 3 AVX-512 VNNI.
    package static func level(_ requested: Int?) -> Int { Int(srk_digit_level(Int32(requested ?? -1))) }

    /// Bits per unsigned digit of V at that level (8).
    package static func digitBits(level requested: Int?) -> Int { Int(srk_digit_bits(Int32(requested ?? -1))) }

    /// Bits per signed digit of W at that level (7 where vpmaddubsw multiplies, else 8).
    package static func weightDigitBits(level requested: Int?) -> Int { Int(srk_digit_weight_bits(Int32(requested ?? -1))) }

    /// Inner elements summed in 32 bits before widening (`SRK_DIGIT_INNER_BLOCK`).
    package static var innerBlock: Int { Int(SRK_DIGIT_INNER_BLOCK) }

    /// out ← ((A·Wᵀ) − subtract) << shift, exactly, for A's planes and W's planes, then the
    /// epilogue (its shift added to `shift`; its bias per output column).
    /// `narrow`: the caller has proved |A·Wᵀ| < 2^63 (64-bit wrapping arithmetic is then exact);
    /// otherwise it guarantees the result fits Int128. O(rows · outputs · inner · planes²).
    package static func product(_ a: UnsignedDigitPlanes, _ w: SignedDigitWeights, narrow: Bool,
                                subtract: [Int128]?, shift: Int, epilogue: Epilogue? = nil, level: Int?,
                                into out: UnsafeMutablePointer<Int128>, layout: Layout) {
        precondition(a.inner == w.inner, "digit product: inner lengths differ")
        precondition(a.digitBits == digitBits(level: level) && w.digitBits == weightDigitBits(level: level),
                     "digit planes were split for another level")
        precondition(a.planes.count * w.packed.count * ((a.inner + innerBlock - 1) / innerBlock) <= 4096
                     && (a.shifts.last ?? 0) + (w.shifts.last ?? 0) < 200, "digit product beyond the combiner's exact range")
        precondition(epilogue.map { $0.bias.count == w.outputs && shift + $0.shift < 128 } ?? true,
                     "digit product: the epilogue does not fit the outputs")
        let aShifts = a.shifts.map(Int32.init), bShifts = w.shifts.map(Int32.init)
        let total = Int32(shift + (epilogue?.shift ?? 0))
        let relu: Int32 = epilogue?.relu == true ? 1 : 0, grid = Int32(epilogue?.gridShift ?? 0)
        withPointers(a.planes) { ap in
            withPointers(w.packed) { bp in
                func run(_ sub: UnsafeRawPointer?, _ bias: UnsafeRawPointer?) {
                    srk_digit_gemm(Int32(level ?? -1), ap, aShifts, a.planes.count, a.rows, a.inner,
                                   bp, bShifts, w.packed.count, w.outputs, narrow ? 1 : 0, sub, total,
                                   bias, relu, grid,
                                   UnsafeMutableRawPointer(out), layout.groupRows, layout.groupStride,
                                   layout.rowStride, layout.columnStride)
                }
                func withBias(_ sub: UnsafeRawPointer?) {
                    if let bias = epilogue?.bias { bias.withUnsafeBytes { run(sub, $0.baseAddress!) } } else { run(sub, nil) }
                }
                if let subtract { subtract.withUnsafeBytes { withBias($0.baseAddress!) } } else { withBias(nil) }
            }
        }
    }

    /// Base pointers of every array, valid inside `body`.
    private static func withPointers<T, R>(_ arrays: [[T]], _ body: ([UnsafePointer<T>?]) -> R) -> R {
        var pointers: [UnsafePointer<T>?] = []
        func go(_ i: Int) -> R {
            if i == arrays.count { return body(pointers) }
            return arrays[i].withUnsafeBufferPointer { p in
                pointers.append(p.baseAddress)
                return go(i + 1)
            }
        }
        return go(0)
    }
}
