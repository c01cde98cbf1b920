// Exact kernels for networks at a resolution: integer weights times wide integer activations,
// with no rounding anywhere. Each product picks the fastest arithmetic that is provably exact.
import SRKernels

/// Integer products V·Wᵀ and the bounds that make them exact.
///
/// The digit-plane path (`ExactDigitProduct.swift`) is exact at any width and is chosen
/// against float64 BLAS by a cost model; the three paths below are the baseline.
/// Why three paths: every product is Σ_i v_i·w_i over integers. With |v| < 2^{bv}, |w| < 2^{bw}
/// and `inner` < 2^{bn} terms, every partial sum is below 2^{bv+bw+bn}. Up to 53 bits float64
/// represents every partial sum exactly, so BLAS dgemm is exact (any summation order, FMA or
/// not); up to 63 bits Int64 is exact; above that Int128 is used, and `NetworkPlan` has proved
/// once per network that Int128 never overflows. The bits are measured on the actual operands
/// (after removing shared trailing zeros), so typical data takes the fast paths even when the
/// worst case would not.
enum ExactArithmetic {
    /// The arithmetic a product runs in.
    enum Path: Sendable, Equatable { case float64BLAS, int64, int128, int8Digits }

    /// The least b with m < 2^b, for m ≥ 0.
    @inline(__always)
    static func bits(_ m: Int128) -> Int { Int128.bitWidth - m.leadingZeroBitCount }

    @inline(__always)
    static func bits(_ m: Int64) -> Int { Int64.bitWidth - m.leadingZeroBitCount }

    /// bits(max |v|). O(n).
    static func magnitudeBits(_ v: [Int128]) -> Int { UInt128.bitWidth - magnitudes(v).leadingZeroBitCount }

    /// bits(max |v|). O(n).
    static func magnitudeBits(_ v: [Int64]) -> Int { UInt64.bitWidth - magnitudes(v).leadingZeroBitCount }

    /// The OR of all |v|: its width is bits(max |v|), its trailing zeros are shared by all.
    static func magnitudes(_ v: [Int128]) -> UInt128 { v.reduce(0) { $0 | $1.magnitude } }
    static func magnitudes(_ v: [Int64]) -> UInt64 { v.reduce(0) { $0 | $1.magnitude } }

    /// The cheapest exact path for a product with these operand bounds.
    static func path(vectorBits: Int, weightBits: Int, inner: Int) -> Path {
        let sumBits = vectorBits + weightBits + bits(Int64(inner))
        if sumBits <= 53 { return .float64BLAS }
        if sumBits <= 63 { return .int64 }
        return .int128
    }

    /// P = V·Wᵀ exactly: V is count × inner (one vector per row), W is outputs × inner
    /// (row-major), P is count × outputs. The caller guarantees |P| < 2^127 (see
    /// `NetworkPlan`). O(count · outputs · inner).
    ///
    /// Trailing zero bits shared by all of V (or all of W) are shifted out first and back into
    /// the result: operands at low resolutions are multiples of a large power of two in the
    /// finest unit, and without those bits they take the faster paths.
    /// `prepared`: W's digit planes split ahead (`PreparedWeights` of exactly `w`), or nil.
    /// `epilogue`: applied to P (bias per output) before it is returned.
    static func product(vectors v: [Int128], count: Int, inner: Int,
                        weights w: [Int64], outputs: Int, prepared: PreparedWeights? = nil, epilogue: Epilogue? = nil,
                        policy: ExactProductPolicy = .automatic, times: ExactPhaseTimes? = nil) -> [Int128] {
        precondition(v.count == count * inner && w.count == outputs * inner, "product shapes disagree")
        let vm = magnitudes(v)
        guard vm != 0, let (sw, wBits) = weightFacts(w, prepared) else {
            return finished([Int128](repeating: 0, count: count * outputs), count: count, perRow: 1, epilogue, times)
        }
        let sv = vm.trailingZeroBitCount
        let vBits = UInt128.bitWidth - (vm >> sv).leadingZeroBitCount
        var chosen = path(vectorBits: vBits, weightBits: wBits, inner: inner)
        if useDigits(policy, legacyPath: chosen, rows: count, inner: inner, outputs: outputs,
                     vectorBits: vBits, weightBits: wBits) {
            chosen = .int8Digits
        }
        times?.paths.append("\(chosen)")
        if chosen == .int8Digits {
            return digitProduct(v, count: count, inner: inner, w, outputs: outputs, prepared: prepared,
                                vectorShift: sv, weightShift: sw, weightBits: wBits, epilogue: epilogue,
                                policy: policy, times: times)
        }
        let vs = sv == 0 ? v : v.map { $0 >> sv }
        let ws = sw == 0 ? w : w.map { $0 >> sw }
        var p: [Int128] = ExactPhaseTimes.measure(times, \.product) {
            switch chosen {
            case .float64BLAS: blasProduct(vs, count, inner, ws, outputs)
            case .int64: int64Product(vs, count, inner, ws, outputs)
            case .int128, .int8Digits: int128Product(vs, count, inner, ws, outputs)
            }
        }
        if sv + sw > 0 {
            for i in p.indices { p[i] <<= sv + sw }
        }
        return finished(p, count: count, perRow: 1, epilogue, times)
    }

    /// p with the epilogue applied (p itself without one); `perRow` elements per bias row.
    private static func finished(_ p: [Int128], count: Int, perRow: Int, _ epilogue: Epilogue?,
                                 _ times: ExactPhaseTimes?) -> [Int128] {
        guard let epilogue else { return p }
        return ExactPhaseTimes.measure(times, \.epilogue) {
            var p = p
            p.withUnsafeMutableBufferPointer { epilogue.apply(to: $0, count: count, perRow: perRow) }
            return p
        }
    }

    /// A 3×3, padding-1 convolution of `count` images [C, H, W] with weights [outC, C, 3, 3]
    /// (`outputs` × C·9, row-major), exactly: [count, outC, H, W]. The digit path splits the
    /// images into digit planes first and builds byte patches from them; the others build
    /// Int128 patches. O(count · H·W · outC · C·9).
    ///
    /// Under `.automatic` convolutions always take the digits: the other paths build an Int128
    /// patch matrix (9 × the image, 16 bytes an element) and reorder the result, which cost
    /// more than the float64 product itself (`srbench exact-inference --profile`: conv 16→32
    /// at 14×14, 1 000 images, 0.65 s of patches and 0.15 s of reorder against 0.63 s of dgemm,
    /// where the digit path took 0.25 s in all).
    static func convolution3x3(_ x: [Int128], count: Int, channels: Int, height: Int, width: Int,
                               weights w: [Int64], outputs outC: Int, prepared: PreparedWeights? = nil,
                               epilogue: Epilogue? = nil, policy: ExactProductPolicy,
                               times: ExactPhaseTimes? = nil) -> [Int128] {
        let plane = height * width, inner = channels * 9
        precondition(x.count == count * channels * plane && w.count == outC * inner, "convolution shapes disagree")
        let vm = magnitudes(x)
        guard vm != 0, let (sw, wBits) = weightFacts(w, prepared) else {
            return finished([Int128](repeating: 0, count: count * outC * plane), count: count, perRow: plane, epilogue, times)
        }
        let sv = vm.trailingZeroBitCount
        if policy != .legacy {
            times?.paths.append("\(Path.int8Digits)")
            return digitConvolution(x, count: count, channels: channels, height: height, width: width,
                                    w, outputs: outC, prepared: prepared, vectorShift: sv, weightShift: sw,
                                    weightBits: wBits, epilogue: epilogue, policy: policy, times: times)
        }
        let patches = ExactPhaseTimes.measure(times, \.patches) {
            patches3x3(x, count: count, channels: channels, height: height, width: width)
        }
        // One row per (sample, pixel), one column per output channel → [outC, H, W].
        let p = product(vectors: patches, count: count * plane, inner: inner, weights: w, outputs: outC,
                        policy: .legacy, times: times)
        let reordered = ExactPhaseTimes.measure(times, \.reorder) {
            var out = [Int128](repeating: 0, count: p.count)
            for s in 0..<count {
                for q in 0..<plane {
                    for o in 0..<outC { out[(s * outC + o) * plane + q] = p[(s * plane + q) * outC + o] }
                }
            }
            return out
        }
        return finished(reordered, count: count, perRow: plane, epilogue, times)
    }

    /// W's shared trailing zeros and bits(max |W| >> them), from `prepared` when given; nil
    /// when W is all zero.
    private static func weightFacts(_ w: [Int64], _ prepared: PreparedWeights?) -> (shift: Int, bits: Int)? {
        if let prepared { return (prepared.shift, prepared.bits) }
        let wm = magnitudes(w)
        guard wm != 0 else { return nil }
        let sw = wm.trailingZeroBitCount
        return (sw, UInt64.bitWidth - (wm >> sw).leadingZeroBitCount)
    }

    /// Every operand and partial sum is an integer below 2^53, so dgemm rounds nothing.
    private static func blasProduct(_ v: [Int128], _ count: Int, _ inner: Int,
                                    _ w: [Int64], _ outputs: Int) -> [Int128] {
        let vd = v.map { Double(Int64(truncatingIfNeeded: $0)) }
        let wd = w.map(Double.init)
        var c = [Double](repeating: 0, count: count * outputs)
        vd.withUnsafeBufferPointer { vp in
            wd.withUnsafeBufferPointer { wp in
                c.withUnsafeMutableBufferPointer { cp in
                    BLAS.gemmTransposedB(rows: count, count: outputs, inner: inner,
                                         a: vp.baseAddress!, lda: inner, b: wp.baseAddress!, ldb: inner,
                                         c: cp.baseAddress!)
                }
            }
        }
        return c.map { Int128(Int64($0)) }
    }

    private static func int64Product(_ v: [Int128], _ count: Int, _ inner: Int,
                                     _ w: [Int64], _ outputs: Int) -> [Int128] {
        let narrow = v.map { Int64(truncatingIfNeeded: $0) }
        var out = [Int128](repeating: 0, count: count * outputs)
        narrow.withUnsafeBufferPointer { vp in
            w.withUnsafeBufferPointer { wp in
                for b in 0..<count {
                    let row = vp.baseAddress! + b * inner
                    for o in 0..<outputs {
                        let col = wp.baseAddress! + o * inner
                        // Wrapping operators: the bound check made overflow impossible, and
                        // they let the compiler vectorise.
                        var s: Int64 = 0
                        for i in 0..<inner { s &+= row[i] &* col[i] }
                        out[b * outputs + o] = Int128(s)
                    }
                }
            }
        }
        return out
    }

    private static func int128Product(_ v: [Int128], _ count: Int, _ inner: Int,
                                      _ w: [Int64], _ outputs: Int) -> [Int128] {
        let wide = w.map { Int128($0) }
        var out = [Int128](repeating: 0, count: count * outputs)
        v.withUnsafeBufferPointer { vp in
            wide.withUnsafeBufferPointer { wp in
                for b in 0..<count {
                    let row = vp.baseAddress! + b * inner
                    for o in 0..<outputs {
                        let col = wp.baseAddress! + o * inner
                        var s: Int128 = 0
                        for i in 0..<inner { s &+= row[i] &* col[i] }
                        out[b * outputs + o] = s
                    }
                }
            }
        }
        return out
    }

    /// The 3×3, padding-1 patches of `count` images [C, H, W]: (count·H·W) × (C·9), patch
    /// elements in (c, ky, kx) order to match conv weights [outC, C, 3, 3]. O(count·C·H·W·9).
    static func patches3x3(_ x: [Int128], count: Int, channels: Int, height: Int, width: Int) -> [Int128] {
        let inner = channels * 9, plane = height * width
        var out = [Int128](repeating: 0, count: count * plane * inner)
        for s in 0..<count {
            let image = s * channels * plane
            for y in 0..<height {
                for xx in 0..<width {
                    let row = ((s * plane) + y * width + xx) * inner
                    for c in 0..<channels {
                        for ky in 0..<3 {
                            let iy = y + ky - 1
                            guard iy >= 0 && iy < height else { continue }
                            for kx in 0..<3 {
                                let ix = xx + kx - 1
                                guard ix >= 0 && ix < width else { continue }
                                out[row + c * 9 + ky * 3 + kx] = x[image + c * plane + iy * width + ix]
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// 2×2, stride-2 max pooling of `count` images [C, H, W] → [C, ⌊H/2⌋, ⌊W/2⌋] (floor mode:
    /// an odd last row or column is in no window).
    static func maxpool2(_ x: [Int128], count: Int, channels: Int, height: Int, width: Int) -> [Int128] {
        let oh = height / 2, ow = width / 2
        precondition(x.count == count * channels * height * width, "max pooling: shape disagrees with the data")
        return [Int128](unsafeUninitializedCapacity: count * channels * oh * ow) { out, initialized in
            x.withUnsafeBufferPointer { x in
                var o = 0
                for s in 0..<count {
                    for c in 0..<channels {
                        let base = (s * channels + c) * height * width
                        for y in 0..<oh {
                            for xx in 0..<ow {
                                let p = base + 2 * y * width + 2 * xx
                                out[o] = max(max(x[p], x[p + 1]), max(x[p + width], x[p + width + 1]))
                                o += 1
                            }
                        }
                    }
                }
                initialized = o
            }
        }
    }

    /// Rounds every unit count to the nearest multiple of 2^shift and expresses it in those
    /// multiples; ties round up (toward +∞), as ⌊(z + 2^{shift−1}) / 2^shift⌋. shift ≥ 1.
    static func roundToGrid(_ x: inout [Int128], shift: Int) {
        precondition((1..<128).contains(shift), "grid shift \(shift) outside 1…127")
        let half = Int128(1) &<< (shift - 1)
        x.withUnsafeMutableBufferPointer { x in
            for i in x.indices { x[i] = (x[i] + half) &>> shift }
        }
    }
}
