// The int8 digit-plane GEMM against a plain Int128 triple loop written here: random shapes and
// widths, negative activations, zero digit planes, inner lengths across the 32-bit split, and
// every instruction-set level this CPU can run; then whole networks under every policy.
import Testing
@testable import SRCore
@testable import SRKernels
@testable import SRNeural

@Suite struct DigitProductTests {
    /// The levels this machine runs (0 portable, 1 AVX2, 2 AVX-512BW, 3 VNNI): a request
    /// above the CPU's best is capped, so a level counts only if it runs as itself.
    static let levels = (0...3).filter { DigitProduct.level($0) == $0 }
    static let policies: [ExactProductPolicy] = levels.map { .digits(level: $0) } + [.automatic]

    /// P = V·Wᵀ by the definition: V count × inner, W outputs × inner, P count × outputs.
    static func reference(_ v: [Int128], count: Int, inner: Int, _ w: [Int64], outputs: Int) -> [Int128] {
        var p = [Int128](repeating: 0, count: count * outputs)
        for b in 0..<count {
            for o in 0..<outputs {
                var s: Int128 = 0
                for i in 0..<inner { s += v[b * inner + i] * Int128(w[o * inner + i]) }
                p[b * outputs + o] = s
            }
        }
        return p
    }

    /// A random integer with |x| < 2^bits (non-negative unless `signed`).
    static func wide(bits: Int, signed: Bool, using g: inout SplitMix64) -> Int128 {
        guard bits > 0 else { return 0 }
        let hi = Int128(Int64.random(in: 0...Int64.max, using: &g)), lo = Int128(UInt64.random(in: 0...UInt64.max, using: &g))
        let x = ((hi << 64) | lo) >> (127 - bits)
        return signed && Bool.random(using: &g) ? -x : x
    }

    @Test(arguments: 0..<40)
    func randomProductsEqualTheInt128Reference(seed: Int) {
        var g = SplitMix64(seed: UInt64(seed) &+ 0xD161)
        let count = Int.random(in: 1...19, using: &g), inner = [1, 3, 4, 5, 9, 17, 64, 131].randomElement(using: &g)!
        let outputs = Int.random(in: 1...40, using: &g)
        let wBits = Int.random(in: 1...62, using: &g)
        // |P| < 2^127 as NetworkPlan guarantees: vBits + wBits + bits(inner) ≤ 126.
        let vBits = Int.random(in: 1...(126 - wBits - ExactArithmetic.bits(Int64(inner))), using: &g)
        let negative = seed % 3 == 0
        let sparse = seed % 4 == 1   // many zero elements, some rows all zero
        let v = (0..<(count * inner)).map { _ in
            sparse && Bool.random(using: &g) ? 0 : Self.wide(bits: vBits, signed: negative, using: &g)
        }
        let w = (0..<(outputs * inner)).map { _ in Int64(Self.wide(bits: wBits, signed: true, using: &g)) }
        let expected = Self.reference(v, count: count, inner: inner, w, outputs: outputs)
        for policy in Self.policies {
            let got = ExactArithmetic.product(vectors: v, count: count, inner: inner, weights: w, outputs: outputs, policy: policy)
            #expect(got == expected, "\(policy), \(count)×\(inner)·\(outputs), \(vBits)+\(wBits) bits, negative \(negative)")
        }
    }

    @Test func zeroDigitPlanesAreSkippedExactly() {
        // V = a·2^40 + b: digit planes between bit 8 and 40 are all zero; W = c·2^24 + d likewise.
        var g = SplitMix64(seed: 5)
        let count = 9, inner = 13, outputs = 20
        let v = (0..<(count * inner)).map { _ in Int128.random(in: 0...255, using: &g) << 40 + Int128.random(in: -100...100, using: &g) }
        let w = (0..<(outputs * inner)).map { _ in Int64.random(in: -127...127, using: &g) << 24 + Int64.random(in: -3...3, using: &g) }
        let weights = SignedDigitWeights(w, outputs: outputs, inner: inner, rightShift: 0)
        #expect(weights.shifts == [0, 24])
        let expected = Self.reference(v, count: count, inner: inner, w, outputs: outputs)
        for policy in Self.policies {
            #expect(ExactArithmetic.product(vectors: v, count: count, inner: inner, weights: w, outputs: outputs, policy: policy) == expected)
        }
        // Only the planes that hold a non-zero digit are kept.
        let planes = v.withUnsafeBufferPointer {
            UnsignedDigitPlanes($0, rows: count, inner: inner, rightShift: 0, offset: 100, digitBits: 8, planeCount: 7)
        }
        #expect(planes.shifts.allSatisfy { $0 <= 8 || $0 >= 40 })
    }

    @Test(arguments: [65_535, 65_536, 65_537, 65_536 + 8, 140_000])
    func innerLengthsAcrossThe32BitBlockStayExact(inner: Int) {
        // Every digit at its maximum against the most negative weight digit in both planes
        // (−128, or −64 where vpmaddubsw pairs them: its 16-bit sums are at their limit too):
        // one unsplit 32-bit sum past 65 793 terms would overflow, so only the split into
        // blocks of 65 536 gets these right.
        let count = 2, outputs = 3
        for level in Self.levels {
            let d = DigitProduct.digitBits(level: level), e = Int64(DigitProduct.weightDigitBits(level: level))
            let v = [Int128](repeating: (Int128(1) << (2 * d)) - 1, count: count * inner)
            let w = [Int64](repeating: -(1 << (e - 1)) * (1 + (1 << e)), count: outputs * inner)
            let expected = Self.reference(v, count: count, inner: inner, w, outputs: outputs)
            let got = ExactArithmetic.product(vectors: v, count: count, inner: inner, weights: w, outputs: outputs,
                                              policy: .digits(level: level))
            #expect(got == expected, "level \(level)")
        }
    }

    @Test(arguments: 0..<12)
    func convolutionsEqualTheirDefinition(seed: Int) {
        var g = SplitMix64(seed: UInt64(seed) &+ 0xC0)
        let count = Int.random(in: 1...3, using: &g), channels = Int.random(in: 1...5, using: &g)
        let height = Int.random(in: 1...7, using: &g), width = Int.random(in: 1...7, using: &g)
        let outC = Int.random(in: 1...20, using: &g), inner = channels * 9
        let wBits = Int.random(in: 1...30, using: &g), vBits = Int.random(in: 1...80, using: &g)
        // Negative inputs: the offset also lands on the padding, whose digits must survive.
        let x = (0..<(count * channels * height * width)).map { _ in Self.wide(bits: vBits, signed: seed % 2 == 0, using: &g) }
        let w = (0..<(outC * inner)).map { _ in Int64(Self.wide(bits: wBits, signed: true, using: &g)) }
        var expected = [Int128](repeating: 0, count: count * outC * height * width)
        for s in 0..<count {
            for o in 0..<outC {
                for y in 0..<height {
                    for xx in 0..<width {
                        var sum: Int128 = 0
                        for c in 0..<channels {
                            for ky in 0..<3 {
                                for kx in 0..<3 {
                                    let iy = y + ky - 1, ix = xx + kx - 1
                                    guard iy >= 0 && iy < height && ix >= 0 && ix < width else { continue }
                                    let xi: Int = ((s * channels + c) * height + iy) * width + ix
                                    let wi: Int = o * inner + c * 9 + ky * 3 + kx
                                    sum += x[xi] * Int128(w[wi])
                                }
                            }
                        }
                        expected[((s * outC + o) * height + y) * width + xx] = sum
                    }
                }
            }
        }
        for policy in Self.policies + [.legacy] {
            let got = ExactArithmetic.convolution3x3(x, count: count, channels: channels, height: height, width: width,
                                                     weights: w, outputs: outC, policy: policy)
            #expect(got == expected, "\(policy)")
        }
    }

    @Test(arguments: 0..<4)
    func networksGiveTheSameLogitsUnderEveryPolicy(seed: Int) throws {
        var g = SplitMix64(seed: UInt64(seed) &+ 0x9011C7)
        var (manifest, tensors) = seed < 2
            ? RefinementFixture.cnn(resolutions: 5, bits: 3, using: &g)
            : RefinementFixture.mlp([12, 8, 6, 3], resolutions: 6, bits: 4, using: &g)
        if seed == 1 { manifest.activationGrid = -2 }
        let samples = (0..<5).map { _ in RefinementFixture.tensor(manifest.input, scale: 2, using: &g) }
        var net = try QuantizedNetwork(manifest: manifest, tensors: tensors,
                                       inputPartition: QuantizedNetwork.fittedInputPartition(manifest: manifest, samples: samples))
        net.productPolicy = .legacy
        let reference = try (1...manifest.resolutions).map { try DirectEvaluator(network: net).evaluate(samples, resolution: $0) }
        for policy in Self.policies {
            net.productPolicy = policy
            var inc = try IncrementalEvaluator(network: net, samples: samples)
            for r in 1...manifest.resolutions {
                #expect(try DirectEvaluator(network: net).evaluate(samples, resolution: r) == reference[r - 1], "\(policy) r=\(r)")
                #expect(try inc.upgrade(Array(samples.indices)) == reference[r - 1], "\(policy) incremental r=\(r)")
            }
        }
    }
}
