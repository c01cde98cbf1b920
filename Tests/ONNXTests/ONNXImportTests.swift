// Imported fixtures compute what numpy computed from the same ONNX graph: the project's float
// forward pass (SRTraining) and its exact refinement (SRNeural) on the fixture's input, against
// the fixture's output.npy. BatchNormalization folding is checked against the unfolded formula.
import Foundation
import SRCore
import SRFormats
@testable import SRNeural
@testable import SRONNX
import SRTraining
import Testing

@Suite struct ONNXImportTests {
    /// The float32 forward pass of the imported model against numpy's float64 reference.
    @Test(arguments: ["vgg-bn", "mlp-reshape"])
    func importedModelComputesWhatNumpyComputed(fixture: String) throws {
        let result = try ONNXImporter.importModel(contentsOf: ONNXFixtures.path(fixture))
        let (inputShape, input) = try ONNXFixtures.npy(fixture, "input.npy")
        let (outputShape, expected) = try ONNXFixtures.npy(fixture, "output.npy")
        let batch = Tensor(shape: inputShape, values: input.map(Float.init))
        // mlp-reshape ends in Softmax (the manifest's head): compare probabilities; vgg-bn has
        // no head in the graph, so its outputs are the logits.
        let got = fixture == "mlp-reshape" ? try result.model.probabilities(for: batch) : try result.model.logits(for: batch)
        #expect(got.shape == outputShape)
        let scale = expected.map(abs).max()!
        let worst = zip(got.values, expected).map { abs(Double($0) - $1) }.max()!
        #expect(worst <= 1e-5 * max(scale, 1), "max |float32 − numpy| = \(worst) (scale \(scale))")
    }

    @Test func vggFixtureBecomesTheProjectsLayers() throws {
        let result = try ONNXImporter.importModel(contentsOf: ONNXFixtures.path("vgg-bn"),
                                                  options: ONNXImportOptions(resolutions: 5, bitsPerUpgrade: 3))
        let m = result.model.manifest
        #expect(m.input == [1, 28, 28])
        #expect(m.resolutions == 5 && m.bitsPerUpgrade == 3)
        let conv = { (i: Int) in LayerSpec.conv2d(weights: "conv\(i).weight", bias: "conv\(i).bias") }
        let dense = { (i: Int) in LayerSpec.dense(weights: "fc\(i).weight", bias: "fc\(i).bias") }
        #expect(m.layers == [conv(1), .relu, conv(2), .relu, .maxpool2, conv(3), .relu, .maxpool2, conv(4), .relu,
                             .maxpool2, .flatten, dense(1), .relu, dense(2), .softmax])
        #expect(try result.model.activationShapes().last == [10])
        #expect(result.model.tensors["conv4.weight"]?.shape == [8, 6, 3, 3])
        #expect(result.model.tensors["fc1.weight"]?.shape == [16, 72])
        #expect(result.opset == 17)
        #expect(result.producer == "scripts/onnx_fixtures.py")
        #expect(result.summary.first == "conv1 (conv2d [4, 1, 3, 3]) ← node 'features.0.conv' (Conv) + node 'features.0.bn' (BatchNormalization)")
    }

    @Test func headAndClassesFollowTheOptions() throws {
        let path = ONNXFixtures.path("mlp-reshape")
        #expect(try ONNXImporter.importModel(contentsOf: path).model.manifest.layers.last == .softmax)
        let none = try ONNXImporter.importModel(contentsOf: path, options: ONNXImportOptions(head: .none))
        #expect(none.model.manifest.layers.last == .dense(weights: "fc2.weight", bias: "fc2.bias"))
        let named = try ONNXImporter.importModel(contentsOf: path, options: ONNXImportOptions(classes: ["a", "b", "c", "d", "e"]))
        #expect(named.model.manifest.classes == ["a", "b", "c", "d", "e"])
        #expect(throws: ONNXImportError.self) {
            try ONNXImporter.importModel(contentsOf: path, options: ONNXImportOptions(classes: ["a", "b"]))
        }
    }

    /// What `srproduce model import` writes loads back as the same model.
    @Test func savedModelLoadsBackUnchanged() throws {
        let result = try ONNXImporter.importModel(contentsOf: ONNXFixtures.path("vgg-bn"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("onnx-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try result.model.save(to: dir)
        #expect(FileManager.default.fileExists(atPath: dir + "/model.json"))
        #expect(try Model.load(from: dir) == result.model)
    }

    /// The imported CNN runs through exact refinement: at a fine final resolution (and with an
    /// activation grid, without which eight linear layers could exceed Int128) its logits are
    /// those of numpy's float network.
    @Test func importedModelRefinesExactly() throws {
        var model = try ONNXImporter.importModel(contentsOf: ONNXFixtures.path("vgg-bn"),
                                                 options: ONNXImportOptions(resolutions: 4, bitsPerUpgrade: 5)).model
        model.manifest.activationGrid = -14
        let (inputShape, input) = try ONNXFixtures.npy("vgg-bn", "input.npy")
        let (_, expected) = try ONNXFixtures.npy("vgg-bn", "output.npy")
        let per = inputShape.dropFirst().reduce(1, *)
        let samples = (0..<inputShape[0]).map { Tensor(shape: [1, 28, 28], values: input[($0 * per)..<(($0 + 1) * per)].map(Float.init)) }
        let network = try QuantizedNetwork(manifest: model.manifest, tensors: model.tensors,
                                           inputPartition: QuantizedNetwork.fittedInputPartition(manifest: model.manifest, samples: samples))
        let exact = try DirectEvaluator(network: network).evaluate(samples, resolution: 4)
        let got = exact.flatMap(\.values)
        let scale = expected.map(abs).max()!
        let worst = zip(got, expected).map { abs($0 - $1) }.max()!
        #expect(worst <= 2e-3 * scale, "max |exact at R − numpy| = \(worst) (scale \(scale))")
    }

    // MARK: BatchNormalization folding

    /// The folded conv1 of the fixture is exactly w·γ/√(var + ε) and (b − mean)·γ/√(var + ε) + β,
    /// computed here in float64 from the file's initializers and rounded once to float32.
    @Test func foldedWeightsFollowTheFormulaExactly() throws {
        let proto = try ONNXFixtures.proto("vgg-bn")
        let model = try ONNXImporter.importModel(proto, source: "vgg-bn", options: ONNXImportOptions()).model
        let w = ONNXFixtures.floats(proto, "features.0.conv.weight"), b = ONNXFixtures.floats(proto, "features.0.conv.bias")
        let gamma = ONNXFixtures.floats(proto, "features.0.bn.weight"), beta = ONNXFixtures.floats(proto, "features.0.bn.bias")
        let mean = ONNXFixtures.floats(proto, "features.0.bn.running_mean"), variance = ONNXFixtures.floats(proto, "features.0.bn.running_var")
        let epsilon = Double(Float(1e-5))
        for c in 0..<4 {
            let s = gamma[c] / (variance[c] + epsilon).squareRoot()
            for k in 0..<9 { #expect(model.tensors["conv1.weight"]!.values[c * 9 + k] == Float(w[c * 9 + k] * s)) }
            #expect(model.tensors["conv1.bias"]!.values[c] == Float((b[c] - mean[c]) * s + beta[c]))
        }
    }

    /// For random layers and inputs, the folded layer equals normalizing the layer's output.
    @Test(arguments: 0..<8)
    func foldingEqualsTheUnfoldedComputation(seed: Int) {
        var g = SplitMix64(seed: UInt64(seed) &+ 0xB4)
        func random(_ n: Int, _ range: ClosedRange<Double>) -> [Double] { (0..<n).map { _ in Double.random(in: range, using: &g) } }
        let rows = Int.random(in: 1...6, using: &g), inner = Int.random(in: 1...20, using: &g)
        let w = random(rows * inner, -2...2), b = random(rows, -1...1)
        let gamma = random(rows, -2...2), beta = random(rows, -1...1), mean = random(rows, -1...1)
        let variance = random(rows, 0...3), epsilon = [1e-5, 1e-3, 0.1][seed % 3]
        var layer = ImportedLinearLayer(kind: .dense, rows: rows, inner: inner, weights: w, bias: b, source: "test")
        #expect(layer.foldBatchNormalization(gamma: gamma, beta: beta, mean: mean, variance: variance, epsilon: epsilon) == nil)
        for _ in 0..<5 {
            let x = random(inner, -3...3)
            for o in 0..<rows {
                let z = (0..<inner).reduce(b[o]) { $0 + w[o * inner + $1] * x[$1] }
                let unfolded = gamma[o] * (z - mean[o]) / (variance[o] + epsilon).squareRoot() + beta[o]
                let folded = (0..<inner).reduce(layer.bias[o]) { $0 + layer.weights[o * inner + $1] * x[$1] }
                #expect(abs(folded - unfolded) <= 1e-9 * max(1, abs(unfolded)), "row \(o)")
            }
        }
    }

    @Test func foldingRefusesANonPositiveVariance() {
        var layer = ImportedLinearLayer(kind: .dense, rows: 2, inner: 1, weights: [1, 2], bias: [0, 0], source: "test")
        let before = layer
        #expect(layer.foldBatchNormalization(gamma: [1, 1], beta: [0, 0], mean: [0, 0], variance: [1, -1e-3], epsilon: 1e-5) == 1)
        #expect(layer == before)
    }
}
