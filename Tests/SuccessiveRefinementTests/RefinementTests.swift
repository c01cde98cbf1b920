// Exactness of network refinement: the incremental upgrade equals direct evaluation at every
// resolution bit for bit, direct evaluation matches an independent float64 forward pass.
import Testing
@testable import SRCore
@testable import SRNeural

@Suite struct RefinementTests {
    // MARK: (1) incremental == direct, exactly

    @Test(arguments: 0..<10)
    func incrementalEqualsDirectOnRandomMLPs(seed: Int) throws {
        var g = SplitMix64(seed: UInt64(seed) &+ 0xA11CE)
        let r = Int.random(in: 4...6, using: &g), bits = Int.random(in: 1...4, using: &g)
        let (manifest, tensors) = RefinementFixture.mlp([12, 8, 6, 3], resolutions: r, bits: bits, using: &g)
        let samples = (0..<7).map { _ in RefinementFixture.tensor([12], scale: 1, using: &g) }
        try RefinementFixture.checkIncrementalEqualsDirect(manifest, tensors, samples, using: &g)
    }

    @Test(arguments: 0..<6)
    func incrementalEqualsDirectOnRandomCNNs(seed: Int) throws {
        var g = SplitMix64(seed: UInt64(seed) &+ 0xC044)
        let r = Int.random(in: 4...6, using: &g), bits = Int.random(in: 1...4, using: &g)
        let (manifest, tensors) = RefinementFixture.cnn(resolutions: r, bits: bits, using: &g)
        let samples = (0..<5).map { _ in RefinementFixture.tensor([2, 6, 6], scale: 1, using: &g) }
        try RefinementFixture.checkIncrementalEqualsDirect(manifest, tensors, samples, using: &g)
    }

    @Test(arguments: [-3, -1, 2])
    func incrementalEqualsDirectWithAnActivationGrid(grid: Int) throws {
        // Rounding is applied to the exact pre-activation in both forms, so they still agree.
        var g = SplitMix64(seed: UInt64(grid + 100))
        var (manifest, tensors) = RefinementFixture.cnn(resolutions: 5, bits: 3, using: &g)
        manifest.activationGrid = grid
        let samples = (0..<4).map { _ in RefinementFixture.tensor([2, 6, 6], scale: 4, using: &g) }
        try RefinementFixture.checkIncrementalEqualsDirect(manifest, tensors, samples, using: &g)
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors,
                                       inputPartition: QuantizedNetwork.fittedInputPartition(manifest: manifest, samples: samples))
        #expect(net.outputExponent == grid)
    }

    @Test func poolingTheInputAndLinearLogitsWork() throws {
        // g_0 = maxpool on the raw input (its increments are recomputed too), no ReLU at all.
        var g = SplitMix64(seed: 77)
        let manifest = ModelManifest(input: [2, 6, 6],
                                     layers: [.maxpool2, .conv2d(weights: "c", bias: "cb"), .flatten,
                                              .dense(weights: "d", bias: "db"), .sigmoid],
                                     resolutions: 5, bitsPerUpgrade: 2)
        let tensors = ["c": RefinementFixture.tensor([3, 2, 3, 3], scale: 0.5, using: &g),
                       "cb": RefinementFixture.tensor([3], scale: 0.2, using: &g),
                       "d": RefinementFixture.tensor([1, 27], scale: 0.3, using: &g),
                       "db": RefinementFixture.tensor([1], scale: 0.2, using: &g)]
        let samples = (0..<4).map { _ in RefinementFixture.tensor([2, 6, 6], scale: 1, using: &g) }
        try RefinementFixture.checkIncrementalEqualsDirect(manifest, tensors, samples, using: &g)
    }

    @Test func poolingOddSizesDropsTheLastRowAndColumn() throws {
        // [2, 7, 5] → conv relu pool → [3, 3, 2] → conv relu pool → [4, 1, 1]: floor mode twice
        // (PyTorch's MaxPool2d(2), ONNX's ceil_mode = 0), exact and incremental alike.
        var g = SplitMix64(seed: 75)
        let manifest = ModelManifest(input: [2, 7, 5],
                                     layers: [.conv2d(weights: "c1", bias: "cb1"), .relu, .maxpool2,
                                              .conv2d(weights: "c2", bias: "cb2"), .relu, .maxpool2, .flatten,
                                              .dense(weights: "d", bias: "db"), .softmax],
                                     resolutions: 4, bitsPerUpgrade: 6)
        let tensors = ["c1": RefinementFixture.tensor([3, 2, 3, 3], scale: 0.5, using: &g),
                       "cb1": RefinementFixture.tensor([3], scale: 0.2, using: &g),
                       "c2": RefinementFixture.tensor([4, 3, 3, 3], scale: 0.4, using: &g),
                       "cb2": RefinementFixture.tensor([4], scale: 0.2, using: &g),
                       "d": RefinementFixture.tensor([3, 4], scale: 0.3, using: &g),
                       "db": RefinementFixture.tensor([3], scale: 0.2, using: &g)]
        let model = Model(manifest: manifest, tensors: tensors)
        #expect(try model.activationShapes() == [[2, 7, 5], [3, 7, 5], [3, 7, 5], [3, 3, 2], [4, 3, 2], [4, 3, 2],
                                                 [4, 1, 1], [4], [3], [3]])
        let samples = (0..<4).map { _ in RefinementFixture.tensor([2, 7, 5], scale: 1, using: &g) }
        try RefinementFixture.checkIncrementalEqualsDirect(manifest, tensors, samples, using: &g)
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors,
                                       inputPartition: QuantizedNetwork.fittedInputPartition(manifest: manifest, samples: samples))
        let got = try DirectEvaluator(network: net).evaluate(samples, resolution: manifest.resolutions)
        let shapes = tensors.mapValues { $0.shape }
        for (s, sample) in samples.enumerated() {
            let reference = RefinementFixture.floatForward(manifest, shapes: shapes, input: sample.values.map(Double.init)) {
                tensors[$0]!.values.map(Double.init)
            }
            let scale = reference.map(abs).max()!
            for (a, b) in zip(got[s].values, reference) { #expect(abs(a - b) <= 1e-5 * scale, "sample \(s)") }
        }
    }

    @Test func samplesAtDifferentResolutionsUpgradeTogether() throws {
        var g = SplitMix64(seed: 42)
        let (manifest, tensors) = RefinementFixture.mlp([12, 8, 6, 3], resolutions: 5, bits: 2, using: &g)
        let samples = (0..<3).map { _ in RefinementFixture.tensor([12], scale: 1, using: &g) }
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors,
                                       inputPartition: QuantizedNetwork.fittedInputPartition(manifest: manifest, samples: samples))
        let direct = DirectEvaluator(network: net)
        var inc = try IncrementalEvaluator(network: net, samples: samples)
        _ = try inc.upgrade([0])
        _ = try inc.upgrade([0])
        let got = try inc.upgrade([2, 0])   // sample 2: 0 → 1, sample 0: 2 → 3; sample 1 untouched
        #expect(got[0] == (try direct.evaluate([samples[2]], resolution: 1))[0])
        #expect(got[1] == (try direct.evaluate([samples[0]], resolution: 3))[0])
        #expect(inc.resolution(of: 1) == 0 && inc.logits(of: 1).units.allSatisfy { $0 == 0 })
    }

    // MARK: (2) the reference code's post-activation defect

    @Test func neuronSwitchingOnIsExactOnlyInPreActivationForm() throws {
        // One hidden neuron: z^(1) = 0.5·0.5 − 0.5 = −0.25 (off), z^(2) = 0.75·0.75 − 0.5 = 0.0625 (on).
        let manifest = ModelManifest(
            input: [1], layers: [.dense(weights: "w1", bias: "b1"), .relu, .dense(weights: "w2", bias: "b2"), .sigmoid],
            resolutions: 2, bitsPerUpgrade: 1,
            partitions: ["input": [0, -1, -2], "w1": [0, -1, -2], "b1": [0, -1, -2], "w2": [1, 0, -1], "b2": [0, -1, -2]])
        let tensors = ["w1": Tensor(shape: [1, 1], values: [0.75]), "b1": Tensor(shape: [1], values: [-0.5]),
                       "w2": Tensor(shape: [1, 1], values: [1]), "b2": Tensor(shape: [1], values: [0])]
        let x = [Tensor(shape: [1], values: [0.75])]
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors)
        let direct = DirectEvaluator(network: net)
        var inc = try IncrementalEvaluator(network: net, samples: x)
        let defective = try RefinementFixture.postActivationReference(net, input: x[0])

        let d1 = try direct.evaluate(x, resolution: 1)[0], d2 = try direct.evaluate(x, resolution: 2)[0]
        #expect(d1.values == [0] && d2.values == [0.0625])
        #expect(try inc.upgrade([0]) == [d1])
        #expect(try inc.upgrade([0]) == [d2])
        // ReLU(post + Δz) = ReLU(0 + 0.3125): the off→on neuron gets Δz instead of z + Δz.
        #expect(defective[0] == [0])
        #expect(defective[1] == [0.3125])
        #expect(defective[1] != d2.values)
    }

    // MARK: (3) and (4) against independent float64 forward passes

    @Test(arguments: 0..<6)
    func finalResolutionMatchesFloatForwardOfQuantizedWeights(seed: Int) throws {
        var g = SplitMix64(seed: UInt64(seed) &+ 0xF10A7)
        let cnn = seed % 2 == 1
        let (manifest, tensors) = cnn
            ? RefinementFixture.cnn(resolutions: 5, bits: 3, using: &g)
            : RefinementFixture.mlp([12, 8, 6, 3], resolutions: 6, bits: 3, using: &g)
        let samples = (0..<4).map { _ in RefinementFixture.tensor(manifest.input, scale: 1, using: &g) }
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors,
                                       inputPartition: QuantizedNetwork.fittedInputPartition(manifest: manifest, samples: samples))
        let got = try DirectEvaluator(network: net).evaluate(samples, resolution: manifest.resolutions)
        // The quantized values, from the values themselves (⌊|v|/2^{p_n}⌋), not from chunks.
        func quantized(_ values: [Float], _ p: PartitionVector) -> [Double] {
            values.map { Double(truncatedUnits(Double($0), finestExponent: p.finestExponent)) * pow2(p.finestExponent) }
        }
        let weights = tensors.mapValues { $0.shape }
        for (s, sample) in samples.enumerated() {
            let reference = RefinementFixture.floatForward(manifest, shapes: weights,
                                                           input: quantized(sample.values, net.inputPartition)) {
                quantized(tensors[$0]!.values, net.tensors[$0]!.partition)
            }
            let scale = reference.map(abs).max()!
            #expect(scale > 0)
            for (a, b) in zip(got[s].values, reference) { #expect(abs(a - b) <= 1e-9 * scale, "sample \(s)") }
        }
    }

    @Test(arguments: 0..<4)
    func fineFinalResolutionApproachesTheOriginalNetwork(seed: Int) throws {
        var g = SplitMix64(seed: UInt64(seed) &+ 0xF1E)
        let cnn = seed % 2 == 1
        // 4 × 6 = 24 bits per operand: final logits within ~2^-20 of the float network.
        let (manifest, tensors) = cnn
            ? RefinementFixture.cnn(resolutions: 4, bits: 6, using: &g)
            : RefinementFixture.mlp([12, 8, 6, 3], resolutions: 4, bits: 6, using: &g)
        let samples = (0..<4).map { _ in RefinementFixture.tensor(manifest.input, scale: 1, using: &g) }
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors,
                                       inputPartition: QuantizedNetwork.fittedInputPartition(manifest: manifest, samples: samples))
        let direct = DirectEvaluator(network: net)
        let shapes = tensors.mapValues { $0.shape }
        let original = samples.map { x in
            RefinementFixture.floatForward(manifest, shapes: shapes, input: x.values.map(Double.init)) {
                tensors[$0]!.values.map(Double.init)
            }
        }
        let scale = original.joined().map(abs).max()!
        var errors: [Double] = []
        for r in 1...manifest.resolutions {
            let got = try direct.evaluate(samples, resolution: r)
            errors.append(zip(got, original).map { zip($0.values, $1).map { abs($0 - $1) }.max()! }.max()! / scale)
        }
        #expect(errors.last! < 1e-5, "relative errors per resolution \(errors)")
        #expect(errors.first! > 100 * errors.last!, "relative errors per resolution \(errors)")
    }

    // MARK: bit growth and error paths

    @Test func refusesNetworksWhoseExactValuesCouldOverflowInt128() throws {
        var g = SplitMix64(seed: 3)
        // 48-bit operands over three layers need ~150 bits exactly.
        var (manifest, tensors) = RefinementFixture.mlp([12, 8, 6, 3], resolutions: 4, bits: 12, using: &g)
        let input = try PartitionVector.fitted(maxMagnitude: 1, chunks: 4, bits: 12)
        let error = #expect(throws: RefinementError.self) {
            try QuantizedNetwork(manifest: manifest, tensors: tensors, inputPartition: input)
        }
        #expect(error?.code == .wouldOverflow)
        #expect(error?.message.contains("activationGrid") == true)
        // A grid re-anchors every layer's unit, and the same network fits.
        manifest.activationGrid = -20
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors, inputPartition: input)
        let samples = (0..<2).map { _ in RefinementFixture.tensor([12], scale: 0.99, using: &g) }
        var inc = try IncrementalEvaluator(network: net, samples: samples)
        for r in 1...4 { #expect(try inc.upgrade([0, 1]) == DirectEvaluator(network: net).evaluate(samples, resolution: r)) }
    }

    @Test func productPathsAgreeWithPlainInt128() {
        var g = SplitMix64(seed: 11)
        // (vector bits, weight bits, trailing zeros of the vectors, expected path): the last
        // case is 90 bits wide but shares 60 trailing zeros, which are shifted out first.
        let cases = [(20, 20, 0, ExactArithmetic.Path.float64BLAS), (30, 28, 0, .int64), (70, 40, 0, .int128),
                     (90, 20, 60, .float64BLAS)]
        for (vBits, wBits, zeros, path) in cases {
            let count = 3, inner = 17, outputs = 5
            let v = (0..<(count * inner)).map { _ in
                (Int128(Int64.random(in: -(1 << 40)...(1 << 40), using: &g)) << (vBits - zeros - 41) | 1) << zeros
            }
            let w = (0..<(outputs * inner)).map { _ in Int64.random(in: -(1 << (wBits - 1))...(1 << (wBits - 1)), using: &g) }
            #expect(ExactArithmetic.magnitudeBits(v) == vBits || ExactArithmetic.magnitudeBits(v) == vBits - 1)
            let stripped = v.map { $0 >> zeros }
            #expect(ExactArithmetic.path(vectorBits: ExactArithmetic.magnitudeBits(stripped),
                                         weightBits: ExactArithmetic.magnitudeBits(w), inner: inner) == path)
            let got = ExactArithmetic.product(vectors: v, count: count, inner: inner, weights: w, outputs: outputs)
            // exactIntegerProduct wants a (rows × n) and x (n × count): rows = outputs, x = vᵀ.
            var vt = [Int128](repeating: 0, count: inner * count)
            for b in 0..<count { for i in 0..<inner { vt[i * count + b] = v[b * inner + i] } }
            let reference = exactIntegerProduct(w.map { Int128($0) }, vt, rows: outputs, inner: inner, count: count)
            for b in 0..<count {
                for o in 0..<outputs { #expect(got[b * outputs + o] == reference[o * count + b], "path \(path)") }
            }
        }
        #expect(ExactArithmetic.product(vectors: [0, 0], count: 1, inner: 2, weights: [3, 4], outputs: 1) == [0])
    }

    @Test func explainsBadNetworksAndBadUpgrades() throws {
        var g = SplitMix64(seed: 9)
        var (manifest, tensors) = RefinementFixture.mlp([12, 8, 3], resolutions: 3, bits: 2, using: &g)
        let input = try PartitionVector([1, 0, -1, -2])

        var missing = tensors
        missing["w1"] = nil
        #expect(throws: RefinementError(.missingTensor, "layer 0 uses tensor \"w1\", which is not among the 3 tensors supplied")) {
            try QuantizedNetwork(manifest: manifest, tensors: missing, inputPartition: input)
        }
        let noInput = #expect(throws: RefinementError.self) { try QuantizedNetwork(manifest: manifest, tensors: tensors) }
        #expect(noInput?.code == .invalidPartition)
        let shortInput = #expect(throws: RefinementError.self) {
            try QuantizedNetwork(manifest: manifest, tensors: tensors, inputPartition: PartitionVector([1, 0]))
        }
        #expect(shortInput?.code == .invalidPartition)

        var wrongChunks = manifest
        wrongChunks.partitions["w2"] = [0, -1]
        let chunks = #expect(throws: RefinementError.self) {
            try QuantizedNetwork(manifest: wrongChunks, tensors: tensors, inputPartition: input)
        }
        #expect(chunks?.code == .invalidPartition)
        #expect(chunks?.message.contains("4 exponents") == true)

        var badShape = tensors
        badShape["w2"] = Tensor(shape: [3, 7], repeating: 0.1)
        let shape = #expect(throws: RefinementError.self) {
            try QuantizedNetwork(manifest: manifest, tensors: badShape, inputPartition: input)
        }
        #expect(shape?.code == .shapeMismatch)

        var afterHead = manifest
        afterHead.layers.insert(.softmax, at: 1)
        let head = #expect(throws: RefinementError.self) {
            try QuantizedNetwork(manifest: afterHead, tensors: tensors, inputPartition: input)
        }
        #expect(head?.code == .unsupportedNetwork)

        // An input outside an explicit partition is refused, never wrapped.
        manifest.partitions["input"] = [0, -1, -2, -3]
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors)
        let range = #expect(throws: LayeringError.self) {
            try IncrementalEvaluator(network: net, samples: [Tensor(shape: [12], repeating: 1.5)])
        }
        #expect(range?.code == .valueOutOfRange)
        #expect(throws: RefinementError.self) { try DirectEvaluator(network: net).evaluate([Tensor(shape: [11], repeating: 0)], resolution: 1) }

        var inc = try IncrementalEvaluator(network: net, samples: [Tensor(shape: [12], repeating: 0.5),
                                                                   Tensor(shape: [12], repeating: -0.5)])
        #expect(throws: RefinementError.self) { try inc.upgrade([0, 0]) }
        #expect(throws: RefinementError.self) { try inc.upgrade([2]) }
        for _ in 0..<3 { _ = try inc.upgrade([0, 1]) }
        let past = #expect(throws: RefinementError.self) { try inc.upgrade([1]) }
        #expect(past?.code == .invalidResolution)
        #expect(throws: RefinementError.self) { try DirectEvaluator(network: net).evaluate([Tensor](), resolution: 4) }
        inc.freeze(0)
        let frozen = #expect(throws: RefinementError.self) { try inc.upgrade([0]) }
        #expect(frozen?.code == .invalidSample)
        #expect(inc.logits(of: 0) == (try DirectEvaluator(network: net).evaluate([Tensor(shape: [12], repeating: 0.5)], resolution: 3))[0])
    }
}

/// Random networks, an independent float64 forward pass, and the reference code's defective
/// post-activation upgrade.
enum RefinementFixture {
    static func tensor(_ shape: [Int], scale: Float, using g: inout SplitMix64) -> Tensor {
        Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &g) })
    }

    /// Dense layers with ReLU between them and a softmax head; tensors w1, b1, w2, b2, ….
    static func mlp(_ sizes: [Int], resolutions: Int, bits: Int,
                    using g: inout SplitMix64) -> (ModelManifest, [String: Tensor]) {
        var layers: [LayerSpec] = [], tensors: [String: Tensor] = [:]
        for k in 1..<sizes.count {
            if k > 1 { layers.append(.relu) }
            layers.append(.dense(weights: "w\(k)", bias: "b\(k)"))
            let scale = 2 / Float(sizes[k - 1]).squareRoot()
            tensors["w\(k)"] = tensor([sizes[k], sizes[k - 1]], scale: scale, using: &g)
            tensors["b\(k)"] = tensor([sizes[k]], scale: 0.3, using: &g)
        }
        layers.append(.softmax)
        return (ModelManifest(input: [sizes[0]], layers: layers, resolutions: resolutions, bitsPerUpgrade: bits), tensors)
    }

    /// A random MLP of `sizes`, `count` random samples and the network split with an input
    /// partition fitted to them.
    static func splitMLP(_ sizes: [Int], resolutions: Int, samples count: Int, using g: inout SplitMix64) throws
        -> (manifest: ModelManifest, tensors: [String: Tensor], samples: [Tensor], network: QuantizedNetwork) {
        let (manifest, tensors) = mlp(sizes, resolutions: resolutions, bits: 2, using: &g)
        let samples = (0..<count).map { _ in tensor([sizes[0]], scale: 1, using: &g) }
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors,
                                       inputPartition: QuantizedNetwork.fittedInputPartition(manifest: manifest, samples: samples))
        return (manifest, tensors, samples, net)
    }

    /// [2, 6, 6] → conv(2→3) relu pool → conv(3→4) relu → flatten → dense(36→3) → softmax.
    static func cnn(resolutions: Int, bits: Int, using g: inout SplitMix64) -> (ModelManifest, [String: Tensor]) {
        let layers: [LayerSpec] = [.conv2d(weights: "c1", bias: "cb1"), .relu, .maxpool2,
                                   .conv2d(weights: "c2", bias: "cb2"), .relu, .flatten,
                                   .dense(weights: "d", bias: "db"), .softmax]
        let tensors = ["c1": tensor([3, 2, 3, 3], scale: 0.5, using: &g), "cb1": tensor([3], scale: 0.2, using: &g),
                       "c2": tensor([4, 3, 3, 3], scale: 0.4, using: &g), "cb2": tensor([4], scale: 0.2, using: &g),
                       "d": tensor([3, 36], scale: 0.3, using: &g), "db": tensor([3], scale: 0.2, using: &g)]
        return (ModelManifest(input: [2, 6, 6], layers: layers, resolutions: resolutions, bitsPerUpgrade: bits), tensors)
    }

    /// Upgrades every sample through all resolutions, freezing a random sample now and then,
    /// and checks each result against direct evaluation (integer equality).
    static func checkIncrementalEqualsDirect(_ manifest: ModelManifest, _ tensors: [String: Tensor],
                                             _ samples: [Tensor], using g: inout SplitMix64) throws {
        let net = try QuantizedNetwork(manifest: manifest, tensors: tensors,
                                       inputPartition: QuantizedNetwork.fittedInputPartition(manifest: manifest, samples: samples))
        let direct = DirectEvaluator(network: net)
        var inc = try IncrementalEvaluator(network: net, samples: samples)
        var active = Array(samples.indices)
        var frozenAt: [Int: Int] = [:]
        for r in 1...manifest.resolutions {
            let got = try inc.upgrade(active)
            let expected = try direct.evaluate(active.map { samples[$0] }, resolution: r)
            #expect(got == expected, "resolution \(r) of \(manifest.resolutions)")
            #expect(got.allSatisfy { $0.exponent == net.outputExponent && $0.shape == net.outputShape })
            if active.count > 1 && Bool.random(using: &g) {
                let i = active.remove(at: Int.random(in: 0..<active.count, using: &g))
                inc.freeze(i)
                frozenAt[i] = r
            }
        }
        for (i, r) in frozenAt {
            #expect(inc.resolution(of: i) == r)
            #expect(inc.logits(of: i) == (try direct.evaluate([samples[i]], resolution: r))[0])
        }
    }

    /// A plain float64 forward pass with loops; `value` gives a tensor's elements.
    static func floatForward(_ manifest: ModelManifest, shapes: [String: [Int]], input: [Double],
                             value: (String) -> [Double]) -> [Double] {
        var x = input, shape = manifest.input
        for layer in manifest.layers {
            switch layer {
            case .dense(let w, let b):
                let wv = value(w), bv = value(b), n = shape[0], m = shapes[w]![0]
                x = (0..<m).map { o in (0..<n).reduce(bv[o]) { $0 + wv[o * n + $1] * x[$1] } }
                shape = [m]
            case .conv2d(let w, let b):
                let wv = value(w), bv = value(b)
                let (c, h, wd, oc) = (shape[0], shape[1], shape[2], shapes[w]![0])
                var out = [Double](repeating: 0, count: oc * h * wd)
                for o in 0..<oc {
                    for y in 0..<h {
                        for xx in 0..<wd {
                            var s = bv[o]
                            for ci in 0..<c {
                                for ky in 0..<3 {
                                    for kx in 0..<3 {
                                        let iy = y + ky - 1, ix = xx + kx - 1
                                        if iy < 0 || iy >= h || ix < 0 || ix >= wd { continue }
                                        s += wv[((o * c + ci) * 3 + ky) * 3 + kx] * x[(ci * h + iy) * wd + ix]
                                    }
                                }
                            }
                            out[(o * h + y) * wd + xx] = s
                        }
                    }
                }
                x = out
                shape = [oc, h, wd]
            case .relu:
                x = x.map { max($0, 0) }
            case .maxpool2:
                let (c, h, wd) = (shape[0], shape[1], shape[2])
                var out: [Double] = []
                // Floor mode: an odd last row or column is in no window.
                for ci in 0..<c {
                    for y in stride(from: 0, to: h - 1, by: 2) {
                        for xx in stride(from: 0, to: wd - 1, by: 2) {
                            let p = (ci * h + y) * wd + xx
                            out.append(max(x[p], x[p + 1], x[p + wd], x[p + wd + 1]))
                        }
                    }
                }
                x = out
                shape = [c, h / 2, wd / 2]
            case .flatten:
                shape = [x.count]
            case .softmax, .sigmoid:
                break
            }
        }
        return x
    }

    /// The reference code's MNIST upgrade for dense/ReLU nets: it stores post-activations and
    /// sets post ← ReLU(post + Δz). Float64 is exact here (few-bit dyadic values). Returns the
    /// logits after each upgrade.
    static func postActivationReference(_ net: QuantizedNetwork, input: Tensor) throws -> [[Double]] {
        let q = try net.quantize(input: input)
        func values(_ t: QuantizedTensor, _ r: Int) -> [Double] {
            t.units(atResolution: r).map { Double($0) * pow2(t.unitExponent) }
        }
        let dense = net.manifest.layers.compactMap { layer -> (String, String)? in
            if case .dense(let w, let b) = layer { return (w, b) } else { return nil }
        }
        var post = dense.map { [Double](repeating: 0, count: net.tensors[$0.1]!.count) }
        var out: [[Double]] = []
        for r in 1...net.resolutions {
            var h = values(q, r - 1), dh = zip(values(q, r), h).map { $0 - $1 }
            for (l, (w, b)) in dense.enumerated() {
                let a = values(net.tensors[w]!, r - 1), aNew = values(net.tensors[w]!, r)
                let db = zip(values(net.tensors[b]!, r), values(net.tensors[b]!, r - 1)).map { $0 - $1 }
                let n = h.count
                var dz = db
                for o in 0..<db.count {
                    for i in 0..<n {
                        let da = aNew[o * n + i] - a[o * n + i]
                        dz[o] += a[o * n + i] * dh[i] + da * (h[i] + dh[i])
                    }
                }
                let last = l == dense.count - 1
                let next = zip(post[l], dz).map { last ? $0 + $1 : max($0 + $1, 0) }   // the defect
                h = post[l]
                dh = zip(next, post[l]).map { $0 - $1 }
                post[l] = next
            }
            out.append(post[dense.count - 1])
        }
        return out
    }
}
