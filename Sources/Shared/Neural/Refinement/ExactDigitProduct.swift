// Exact products on the int8 digit-plane GEMM: V is made non-negative by an offset, split into
// unsigned digit planes, multiplied by W's signed digit planes, and recombined exactly.
import SRKernels

extension ExactArithmetic {
    /// Rows per digit-plane chunk: planes of a few MB stay in cache while every output block
    /// and weight plane passes over them, and memory stays bounded for any batch.
    static let digitChunkRows = 8192

    /// Whether a product takes the digit path under `policy`.
    static func useDigits(_ policy: ExactProductPolicy, legacyPath: Path, rows: Int, inner: Int, outputs: Int,
                          vectorBits: Int, weightBits: Int) -> Bool {
        switch policy {
        case .legacy: return false
        case .digits: return true
        case .automatic:
            // Beyond 53 bits the alternatives are scalar Int64/Int128 loops: digits always win.
            guard legacyPath == .float64BLAS else { return true }
            return prefersDigits(inner: inner, outputs: outputs, vectorBits: vectorBits, weightBits: weightBits)
        }
    }

    /// The cost model between the digit GEMM and dgemm, per row of V, in nanoseconds measured
    /// with `srbench exact-inference --profile` (see `CostModel`).
    /// dgemm: converting the row and its outputs, then outputs·inner multiply-adds. Digits: the
    /// split (one byte per plane and element), then per pair of planes and block of 16 outputs,
    /// the micro-kernel over the padded inner length plus folding the 16 sums into 64 bits.
    static func prefersDigits(inner: Int, outputs: Int, vectorBits: Int, weightBits: Int) -> Bool {
        let d = DigitProduct.digitBits(level: nil), e = DigitProduct.weightDigitBits(level: nil)
        let a = Double((vectorBits + d - 1) / d), b = Double((weightBits + e) / e)
        let blocks = Double((outputs + 15) / 16), kp = Double((inner + 3) & ~3)
        let n = Double(outputs), k = Double(inner)
        let blas = CostModel.blasConvert * (k + n) + CostModel.blasMultiplyAdd * n * k
        let digits = CostModel.digitSplit * a * k
            + a * b * blocks * (CostModel.digitKernel * kp + CostModel.digitFold)
            + blocks * CostModel.digitEpilogue
        return digits < blas
    }

    /// Nanoseconds per unit of work (see `prefersDigits`), from `srbench exact-inference
    /// --profile` on the development machine (AMD EPYC, AVX2, 1 thread, shared with other jobs,
    /// so only the ratios matter): dgemm with its Int128 conversions reached about 2 GMAC/s,
    /// the AVX2 digit kernel about 1.3 ns per row, 16 outputs and inner element.
    enum CostModel {
        static let blasConvert = 5.0
        static let blasMultiplyAdd = 0.45
        static let digitSplit = 2.0
        static let digitKernel = 1.3
        static let digitFold = 10.0
        static let digitEpilogue = 20.0
    }

    /// The level a policy forces (nil: the best the CPU has).
    private static func level(_ policy: ExactProductPolicy) -> Int? {
        if case .digits(let level) = policy { return level }
        return nil
    }

    /// The prepared planes if they were split for `level`'s kernel.
    private static func planes(_ p: PreparedWeights?, _ level: Int?) -> SignedDigitWeights? {
        guard let p, p.planes.digitBits == DigitProduct.weightDigitBits(level: level) else { return nil }
        return p.planes
    }

    /// The offset that makes every v >> shift non-negative, and bits(max of the result).
    private static func offsetAndBits(_ v: [Int128], shift: Int) -> (offset: Int128, bits: Int) {
        var lo: Int128 = 0, hi: Int128 = 0
        for x in v {
            lo = min(lo, x)
            hi = max(hi, x)
        }
        let offset = -(lo >> shift)
        return (offset, bits((hi >> shift) + offset))
    }

    /// V·Wᵀ by digit planes (see `product`); sv, sw: the shared trailing zeros of V and W.
    static func digitProduct(_ v: [Int128], count: Int, inner: Int, _ w: [Int64], outputs: Int,
                             prepared: PreparedWeights?, vectorShift sv: Int, weightShift sw: Int, weightBits: Int,
                             epilogue: Epilogue?, policy: ExactProductPolicy,
                             times: ExactPhaseTimes? = nil) -> [Int128] {
        let level = level(policy), d = DigitProduct.digitBits(level: level)
        let weights = planes(prepared, level) ?? ExactPhaseTimes.measure(times, \.weights) {
            SignedDigitWeights(w, outputs: outputs, inner: inner, rightShift: sw,
                               digitBits: DigitProduct.weightDigitBits(level: level))
        }
        let (offset, vBits) = ExactPhaseTimes.measure(times, \.split) { offsetAndBits(v, shift: sv) }
        // |V'·Wᵀ| < inner · 2^vBits · 2^weightBits: within 63 bits, wrapping Int64 is exact.
        let narrow = vBits + weightBits + bits(Int64(inner)) <= 63
        // V·Wᵀ = V'·Wᵀ − offset·rowsum(W); all of it modulo 2^128, exact since the result fits.
        let subtract = offset == 0 ? nil : weights.rowSums.map { $0 &* offset }
        let planes = max(1, (vBits + d - 1) / d)
        var out = [Int128](repeating: 0, count: count * outputs)
        v.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                for r0 in stride(from: 0, to: count, by: digitChunkRows) {
                    let rows = min(digitChunkRows, count - r0)
                    let a = ExactPhaseTimes.measure(times, \.split) {
                        UnsignedDigitPlanes(UnsafeBufferPointer(rebasing: vp[(r0 * inner)..<((r0 + rows) * inner)]),
                                            rows: rows, inner: inner, rightShift: sv, offset: offset,
                                            digitBits: d, planeCount: planes)
                    }
                    ExactPhaseTimes.measure(times, \.product) {
                        DigitProduct.product(a, weights, narrow: narrow, subtract: subtract, shift: sv + sw,
                                             epilogue: epilogue, level: level,
                                             into: op.baseAddress! + r0 * outputs,
                                             layout: .rowMajor(rows: rows, columns: outputs))
                    }
                }
            }
        }
        return out
    }

    /// The 3×3 convolution by digit planes (see `convolution3x3`): the images are split into
    /// digits once and the byte planes are patched, so no Int128 patch matrix is built.
    static func digitConvolution(_ x: [Int128], count: Int, channels: Int, height: Int, width: Int,
                                 _ w: [Int64], outputs outC: Int, prepared: PreparedWeights?, vectorShift sv: Int,
                                 weightShift sw: Int, weightBits: Int, epilogue: Epilogue?,
                                 policy: ExactProductPolicy, times: ExactPhaseTimes? = nil) -> [Int128] {
        let level = level(policy), d = DigitProduct.digitBits(level: level)
        let plane = height * width, inner = channels * 9, size = channels * plane
        let weights = planes(prepared, level) ?? ExactPhaseTimes.measure(times, \.weights) {
            SignedDigitWeights(w, outputs: outC, inner: inner, rightShift: sw,
                               digitBits: DigitProduct.weightDigitBits(level: level))
        }
        let (offset, vBits) = ExactPhaseTimes.measure(times, \.split) { offsetAndBits(x, shift: sv) }
        let narrow = vBits + weightBits + bits(Int64(inner)) <= 63
        let subtract = offset == 0 ? nil : weights.rowSums.map { $0 &* offset }
        let planes = max(1, (vBits + d - 1) / d)
        let samplesPerChunk = max(1, digitChunkRows / plane)
        var out = [Int128](repeating: 0, count: count * outC * plane)
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                for s0 in stride(from: 0, to: count, by: samplesPerChunk) {
                    let n = min(samplesPerChunk, count - s0)
                    // Padding is 0 before the offset, `offset` after it: its digits must be kept.
                    let digits = ExactPhaseTimes.measure(times, \.split) {
                        UnsignedDigitPlanes(UnsafeBufferPointer(rebasing: xp[(s0 * size)..<((s0 + n) * size)]),
                                            rows: n * channels, inner: plane, rightShift: sv, offset: offset,
                                            digitBits: d, planeCount: planes, alsoHeld: offset)
                    }
                    let patches = ExactPhaseTimes.measure(times, \.patches) {
                        digits.patches3x3(count: n, channels: channels, height: height, width: width, padding: offset)
                    }
                    // Row (sample s, pixel q), column o goes to [s, o, q].
                    ExactPhaseTimes.measure(times, \.product) {
                        DigitProduct.product(patches, weights, narrow: narrow, subtract: subtract, shift: sv + sw,
                                             epilogue: epilogue, level: level, into: op.baseAddress! + s0 * outC * plane,
                                             layout: DigitProduct.Layout(groupRows: plane, groupStride: outC * plane,
                                                                         rowStride: 1, columnStride: plane))
                    }
                }
            }
        }
        return out
    }
}
