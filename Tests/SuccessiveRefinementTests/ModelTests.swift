// Model files, manifests, forward evaluation and training: a float64 reference network and
// gradient checks (safetensors files: SafetensorsTests.swift).
import Foundation
import Testing
@testable import SRCore
@testable import SRFormats
@testable import SRNeural
@testable import SRTraining

// MARK: - Helpers

/// Runs python3 with numpy on a script; skipped suites say why when it is missing.
enum ModelTestPython {
    static let isAvailable: Bool = (try? run("import numpy", arguments: [])) != nil

    /// Runs `script` with `arguments`; returns stdout, throws on a non-zero exit.
    @discardableResult
    static func run(_ script: String, arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CocoaError(.executableLoad) }
        return String(decoding: data, as: UTF8.self)
    }
}

/// Fixtures of these tests, in one namespace so they cannot clash with other test files.
enum ModelFixtures {
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sr-model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func randomTensor(_ shape: [Int], scale: Float = 1, using g: inout SplitMix64) -> Tensor {
        Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -scale...scale, using: &g) })
    }

    /// A safetensors image from a header string and raw data, with a chosen length field.
    static func safetensorsBytes(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        var out: [UInt8] = []
        withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { out += $0 }
        return out + h + data
    }

    /// The independent reference: a float64 interpreter of a manifest with plain loops.
    enum ReferenceNetwork {
        /// Logits (before the head) of one sample.
        static func logits(_ model: Model, sample: [Double]) -> [Double] {
            var x = sample
            var shape = model.manifest.input
            func t(_ name: String) -> [Double] { model.tensors[name]!.values.map(Double.init) }
            for layer in model.manifest.layers {
                switch layer {
                case .dense(let wn, let bn):
                    let w = t(wn), b = t(bn), n = x.count, m = b.count
                    x = (0..<m).map { o in (0..<n).reduce(b[o]) { $0 + w[o * n + $1] * x[$1] } }
                    shape = [m]
                case .conv2d(let wn, let bn):
                    let w = t(wn), b = t(bn)
                    let (c, h, wd, oc) = (shape[0], shape[1], shape[2], b.count)
                    var y = [Double](repeating: 0, count: oc * h * wd)
                    for o in 0..<oc {
                        for i in 0..<h {
                            for j in 0..<wd {
                                var s = b[o]
                                for ci in 0..<c {
                                    for ky in 0..<3 {
                                        for kx in 0..<3 {
                                            let (yi, xj) = (i + ky - 1, j + kx - 1)
                                            if yi < 0 || yi >= h || xj < 0 || xj >= wd { continue }
                                            s += w[((o * c + ci) * 3 + ky) * 3 + kx] * x[(ci * h + yi) * wd + xj]
                                        }
                                    }
                                }
                                y[(o * h + i) * wd + j] = s
                            }
                        }
                    }
                    x = y
                    shape = [oc, h, wd]
                case .maxpool2:
                    let (c, h, wd) = (shape[0], shape[1], shape[2])
                    var y: [Double] = []
                    for ci in 0..<c {
                        for i in 0..<(h / 2) {
                            for j in 0..<(wd / 2) {
                                let at = { (a: Int, b: Int) in x[(ci * h + 2 * i + a) * wd + 2 * j + b] }
                                y.append(max(at(0, 0), at(0, 1), at(1, 0), at(1, 1)))
                            }
                        }
                    }
                    x = y
                    shape = [c, h / 2, wd / 2]
                case .relu: x = x.map { max($0, 0) }
                case .flatten: shape = [x.count]
                case .softmax, .sigmoid: break
                }
            }
            return x
        }

        /// Mean cross-entropy over samples (softmax, or binary for a sigmoid head).
        static func loss(_ model: Model, images: [Float], labels: [UInt8]) -> Double {
            let n = images.count / labels.count
            let sigmoid = model.manifest.layers.last == .sigmoid
            var total = 0.0
            for (k, label) in labels.enumerated() {
                let z = logits(model, sample: images[(k * n)..<((k + 1) * n)].map(Double.init))
                if sigmoid {
                    let y = Double(label)
                    total += max(z[0], 0) - y * z[0] + log1p(exp(-abs(z[0])))
                } else {
                    let m = z.max()!
                    total += log(z.reduce(0) { $0 + exp($1 - m) }) + m - z[Int(label)]
                }
            }
            return total / Double(labels.count)
        }
    }

    /// input [2, 8, 8] → conv(2→3) relu pool → conv(3→4) relu pool → flatten 16 → dense 5 relu → dense `classes`.
    static func tinyConvNet(classes: Int = 3, seed: UInt64 = 7) -> Model {
        var g = SplitMix64(seed: seed)
        let manifest = ModelManifest(
            input: [2, 8, 8],
            layers: [.conv2d(weights: "c1.w", bias: "c1.b"), .relu, .maxpool2,
                     .conv2d(weights: "c2.w", bias: "c2.b"), .relu, .maxpool2, .flatten,
                     .dense(weights: "f1.w", bias: "f1.b"), .relu, .dense(weights: "f2.w", bias: "f2.b"),
                     classes == 1 ? .sigmoid : .softmax],
            resolutions: 4, bitsPerUpgrade: 1)
        let tensors = [
            "c1.w": ModelFixtures.randomTensor([3, 2, 3, 3], scale: 0.5, using: &g), "c1.b": ModelFixtures.randomTensor([3], scale: 0.1, using: &g),
            "c2.w": ModelFixtures.randomTensor([4, 3, 3, 3], scale: 0.4, using: &g), "c2.b": ModelFixtures.randomTensor([4], scale: 0.1, using: &g),
            "f1.w": ModelFixtures.randomTensor([5, 16], scale: 0.5, using: &g), "f1.b": ModelFixtures.randomTensor([5], scale: 0.1, using: &g),
            "f2.w": ModelFixtures.randomTensor([classes, 5], scale: 0.5, using: &g), "f2.b": ModelFixtures.randomTensor([classes], scale: 0.1, using: &g),
        ]
        return Model(manifest: manifest, tensors: tensors)
    }

    /// A dense net 784-like in shape but tiny: input [12] → 8 relu → 3, softmax.
    static func tinyDenseModel() -> Model {
        var g = SplitMix64(seed: 3)
        let manifest = ModelManifest(input: [12], layers: [.dense(weights: "fc1.weight", bias: "fc1.bias"), .relu,
                                                            .dense(weights: "fc2.weight", bias: "fc2.bias"), .softmax],
                                     resolutions: 4, bitsPerUpgrade: 1)
        return Model(manifest: manifest, tensors: [
            "fc1.weight": ModelFixtures.randomTensor([8, 12], using: &g), "fc1.bias": ModelFixtures.randomTensor([8], using: &g),
            "fc2.weight": ModelFixtures.randomTensor([3, 8], using: &g), "fc2.bias": ModelFixtures.randomTensor([3], using: &g),
        ])
    }

    static func expectModelError(_ code: ModelError.Code, containing fragments: [String],
                          sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws(ModelError) -> Void) {
        do {
            try body()
            Issue.record("expected a \(code) error", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == code, "\(error.message)", sourceLocation: sourceLocation)
            for fragment in fragments {
                #expect(error.message.contains(fragment), "'\(fragment)' not in: \(error.message)", sourceLocation: sourceLocation)
            }
        }
    }
}

// MARK: - Manifests and validation

@Suite struct ModelManifestTests {
    @Test func savesAndLoadsBothForms() throws {
        let dir = try ModelFixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = ModelFixtures.tinyConvNet()
        let folder = dir.appendingPathComponent("net").path
        try model.save(to: folder)
        #expect(try Model.load(from: folder) == model)
        #expect(try Model.load(from: folder + "/model.json") == model)
        let single = dir.appendingPathComponent("net.safetensors").path
        try model.save(toFile: single)
        #expect(try Model.load(from: single) == model)
    }

    @Test func everyLayerKindIsListed() throws {
        let all: [LayerSpec] = [.dense(weights: "w", bias: "b"), .conv2d(weights: "w", bias: "b"), .maxpool2,
                                .relu, .flatten, .softmax, .sigmoid]
        for layer in all {
            let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(layer)) as! [String: Any]
            #expect(Array(json.keys) == [Model.kind(of: layer)])
            #expect(Model.layerKinds.contains(Model.kind(of: layer)))
        }
        #expect(Model.layerKinds.count == all.count)
    }

    @Test func unknownLayerKindIsNamed() throws {
        var object = try JSONSerialization.jsonObject(with: Data(Model.encodeManifest(ModelFixtures.tinyConvNet().manifest))) as! [String: Any]
        var layers = object["layers"] as! [Any]
        layers[3] = ["conv5x5": ["weights": "c2.w", "bias": "c2.b"]]
        object["layers"] = layers
        let data = try JSONSerialization.data(withJSONObject: object)
        ModelFixtures.expectModelError(.unknownLayer, containing: [
            "m.json: unknown layer kind 'conv5x5' at layers[3]; supported: dense, conv2d, maxpool2, relu, flatten, softmax, sigmoid",
        ]) { () throws(ModelError) in _ = try Model.decodeManifest(data, source: "m.json") }

        layers[3] = "relu"
        object["layers"] = layers
        let shorthand = try JSONSerialization.data(withJSONObject: object)
        ModelFixtures.expectModelError(.badManifest, containing: ["layers[3] is the string 'relu'", #"write {"relu": {}}"#]) { () throws(ModelError) in
            _ = try Model.decodeManifest(shorthand)
        }
    }

    @Test func malformedManifestsSayWhatIsWrong() {
        ModelFixtures.expectModelError(.badManifest, containing: ["missing key 'resolutions'"]) { () throws(ModelError) in
            _ = try Model.decodeManifest(Data(#"{"format":"sr-model","version":1,"input":[4],"layers":[],"bitsPerUpgrade":1,"partitions":{}}"#.utf8))
        }
        ModelFixtures.expectModelError(.badManifest, containing: ["not valid JSON"]) { () throws(ModelError) in
            _ = try Model.decodeManifest(Data("{".utf8))
        }
        ModelFixtures.expectModelError(.badManifest, containing: ["version 2 is not supported"]) { () throws(ModelError) in
            var m = ModelFixtures.tinyDenseModel().manifest
            m.version = 2
            _ = try Model.decodeManifest(Data(Model.encodeManifest(m)))
        }
    }

    /// Crafted manifests: each refused with a message naming the field, none crashing.
    @Test func craftedManifestValuesAreRefusedWithTheirField() {
        func refused(_ edit: (inout ModelManifest) -> Void, code: ModelError.Code = .badManifest, _ phrase: String) {
            var m = ModelFixtures.tinyConvNet().manifest
            edit(&m)
            ModelFixtures.expectModelError(code, containing: [phrase]) { () throws(ModelError) in
                _ = try Model.decodeManifest(Data(Model.encodeManifest(m)), source: "m.json")
            }
        }
        refused({ $0.resolutions = 0 }, "resolutions is 0; it must be 1…32")
        refused({ $0.resolutions = 1_000_000_000 }, "resolutions is 1000000000")
        refused({ $0.bitsPerUpgrade = -3 }, "bitsPerUpgrade is -3; it must be 1…31")
        refused({ $0.resolutions = 16; $0.bitsPerUpgrade = 8 }, "128 bits; at most 62")
        refused({ $0.partitions["input"] = [5, 5, 5] }, #"partitions["input"]: partition [5, 5, 5] must be strictly decreasing"#)
        refused({ $0.partitions["c1.w"] = [5, 1] }, #"has 1 chunks, but resolutions is"#)
        refused({ $0.activationGrid = 100_000 }, "activationGrid is 100000")
        // 2^24 · 2^24 · 2^24 overflows a 64-bit product once flattened.
        refused({ $0.input = [1 << 24, 1 << 24, 1 << 24] }, code: .shapeMismatch, "more than 134217728 elements")
        refused({ $0.input = [0] }, "input shape [0] must have 1–3 dimensions")
    }

    @Test func missingTensorIsNamed() {
        var model = ModelFixtures.tinyDenseModel()
        model.tensors["fc2.bias"] = nil
        ModelFixtures.expectModelError(.missingTensor, containing: ["layer 2 (dense): tensor 'fc2.bias' is not in the weights file", "'fc1.weight'"]) { () throws(ModelError) in
            try model.validate()
        }
    }

    @Test func wrongShapesAreExplained() {
        var model = ModelFixtures.tinyDenseModel()
        model.manifest.input = [128]
        model.tensors["fc1.weight"] = Tensor(shape: [10, 100])
        ModelFixtures.expectModelError(.shapeMismatch, containing: ["layer 0 (dense): tensor 'fc1.weight' has shape [10, 100] but the input to this layer has 128 features"]) { () throws(ModelError) in
            try model.validate()
        }
        model = ModelFixtures.tinyDenseModel()
        model.tensors["fc2.bias"] = Tensor(shape: [4])
        ModelFixtures.expectModelError(.shapeMismatch, containing: ["layer 2 (dense): tensor 'fc2.bias' has shape [4] but 'fc2.weight' has 3 outputs"]) { () throws(ModelError) in
            try model.validate()
        }
        model = ModelFixtures.tinyConvNet()
        model.tensors["c2.w"] = Tensor(shape: [4, 2, 3, 3])
        ModelFixtures.expectModelError(.shapeMismatch, containing: ["layer 3 (conv2d)", "has shape [4, 2, 3, 3] but the input to this layer has 3 channels"]) { () throws(ModelError) in
            try model.validate()
        }
        model = ModelFixtures.tinyConvNet()
        model.tensors["c1.w"] = Tensor(shape: [3, 2, 5, 5])
        ModelFixtures.expectModelError(.shapeMismatch, containing: ["[outC, inC, 3, 3]"]) { () throws(ModelError) in try model.validate() }
        model = ModelFixtures.tinyConvNet()
        model.manifest.layers.remove(at: 6)  // flatten
        ModelFixtures.expectModelError(.shapeMismatch, containing: ["layer 6 (dense)", "add a flatten layer"]) { () throws(ModelError) in try model.validate() }
        model = ModelFixtures.tinyConvNet()
        model.manifest.input = [2, 2, 2]
        ModelFixtures.expectModelError(.shapeMismatch, containing: ["layer 5 (maxpool2)", "[4, 1, 1]", "at least 2"]) { () throws(ModelError) in try model.validate() }
        // Odd sizes pool in floor mode: [2, 10, 10] → [3, 5, 5] → [4, 2, 2], 16 features as before.
        model.manifest.input = [2, 10, 10]
        #expect((try? model.activationShapes())?[6] == [4, 2, 2])
        model = ModelFixtures.tinyConvNet(classes: 3)
        model.manifest.layers[10] = .sigmoid
        ModelFixtures.expectModelError(.shapeMismatch, containing: ["layer 10 (sigmoid)", "exactly one"]) { () throws(ModelError) in try model.validate() }
        model = ModelFixtures.tinyDenseModel()
        model.manifest.layers.insert(.softmax, at: 1)
        ModelFixtures.expectModelError(.badManifest, containing: ["layer 1 (softmax)", "must be the last layer"]) { () throws(ModelError) in try model.validate() }
        model = ModelFixtures.tinyDenseModel()
        model.tensors["fc1.bias"]!.values[2] = .nan
        ModelFixtures.expectModelError(.badData, containing: ["tensor 'fc1.bias' has the non-finite value nan at flat index 2"]) { () throws(ModelError) in try model.validate() }
    }

    @Test func loadRejectsAWeightsFileWithoutManifest() throws {
        let dir = try ModelFixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("w.safetensors").path
        try Safetensors.write(Safetensors.File(tensors: ModelFixtures.tinyDenseModel().tensors), to: path)
        ModelFixtures.expectModelError(.badManifest, containing: ["no 'sr-model' entry", "model.json"]) { () throws(ModelError) in
            _ = try Model.load(from: path)
        }
        ModelFixtures.expectModelError(.io, containing: ["no such file or directory"]) { () throws(ModelError) in
            _ = try Model.load(from: dir.appendingPathComponent("absent").path)
        }
    }
}

// MARK: - Forward and training

@Suite struct ModelForwardAndTrainingTests {
    @Test func forwardMatchesTheFloat64Reference() throws {
        let model = ModelFixtures.tinyConvNet()
        var g = SplitMix64(seed: 11)
        let batch = ModelFixtures.randomTensor([5, 2, 8, 8], using: &g)
        let logits = try model.logits(for: batch)
        #expect(logits.shape == [5, 3])
        var worst = 0.0
        for b in 0..<5 {
            let reference = ModelFixtures.ReferenceNetwork.logits(model, sample: batch.values[(b * 128)..<((b + 1) * 128)].map(Double.init))
            for j in 0..<3 { worst = max(worst, abs(reference[j] - Double(logits.values[b * 3 + j]))) }
        }
        #expect(worst < 1e-4)

        let flat = try model.logits(for: Tensor(shape: [5, 128], values: batch.values))
        #expect(flat == logits)
        let p = try model.probabilities(for: batch)
        for b in 0..<5 { #expect(abs(p.values[(b * 3)..<(b * 3 + 3)].reduce(0, +) - 1) < 1e-5) }
        let predicted = try model.predictions(for: batch)
        for b in 0..<5 {
            let row = Array(logits.values[(b * 3)..<(b * 3 + 3)])
            #expect(predicted[b] == row.firstIndex(of: row.max()!)!)
        }
        ModelFixtures.expectModelError(.shapeMismatch, containing: ["[5, 127]", "[2, 8, 8]"]) { () throws(ModelError) in
            _ = try model.logits(for: Tensor(shape: [5, 127]))
        }
    }

    @Test func largeBatchesAreSlicedWithoutChangingResults() throws {
        let model = ModelFixtures.tinyConvNet()
        var g = SplitMix64(seed: 2)
        let batch = ModelFixtures.randomTensor([30, 2, 8, 8], using: &g)
        let whole = try model.logits(for: batch, sliceSize: 30)
        let sliced = try model.logits(for: batch, sliceSize: 7)
        #expect(whole.shape == [30, 3])
        for (a, b) in zip(whole.values, sliced.values) { #expect(abs(a - b) < 1e-5) }
        // 224×224 RGB: the im2col buffer is 27 · 224² floats per sample, so ~5 samples per slice.
        let wide = Model(manifest: ModelManifest(input: [3, 224, 224], layers: [.conv2d(weights: "w", bias: "b")],
                                                 resolutions: 1, bitsPerUpgrade: 1),
                         tensors: ["w": Tensor(shape: [8, 3, 3, 3]), "b": Tensor(shape: [8])])
        #expect(try Network(wide).evaluationSlice == 8_000_000 / (27 * 224 * 224))
    }

    /// Backprop in float32 against central differences of the float64 reference loss.
    /// Cases: the conv net with a softmax head (3 classes) or a sigmoid head (1), and a pooling
    /// + flatten front without parameters (0), whose input gradients backprop skips.
    @Test(arguments: [3, 1, 0])
    func gradientsMatchFiniteDifferences(classes: Int) throws {
        var model = ModelFixtures.tinyConvNet(classes: max(classes, 3), seed: 5)
        if classes == 1 { model = ModelFixtures.tinyConvNet(classes: 1, seed: 5) }
        var g = SplitMix64(seed: 9)
        if classes == 0 {
            model.manifest.layers = [.maxpool2, .relu, .flatten, .dense(weights: "f2.w", bias: "f2.b"), .softmax]
            model.tensors = ["f2.w": ModelFixtures.randomTensor([3, 32], using: &g), "f2.b": Tensor(shape: [3])]
        }
        let images = ModelFixtures.randomTensor([4, 2, 8, 8], using: &g).values
        let labels: [UInt8] = classes == 1 ? [0, 1, 1, 0] : [0, 2, 1, 2]
        let (loss, gradients) = try Training.lossAndGradients(model, images: images, labels: labels)
        #expect(abs(Double(loss) - ModelFixtures.ReferenceNetwork.loss(model, images: images, labels: labels)) < 1e-5)
        // Small steps, because a larger one can straddle a ReLU or max-pool kink; the float64
        // reference keeps the difference quotient free of cancellation.
        let h: Float = 1e-5
        for (name, tensor) in model.tensors {
            var numeric: [Double] = []
            for k in tensor.values.indices {
                var plus = model, minus = model
                plus.tensors[name]!.values[k] += h
                minus.tensors[name]!.values[k] -= h
                let step = Double(plus.tensors[name]!.values[k]) - Double(minus.tensors[name]!.values[k])
                numeric.append((ModelFixtures.ReferenceNetwork.loss(plus, images: images, labels: labels)
                                - ModelFixtures.ReferenceNetwork.loss(minus, images: images, labels: labels)) / step)
            }
            let analytic = gradients[name]!.values.map(Double.init)
            let difference = zip(numeric, analytic).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
            let scale = max(numeric.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-3)
            #expect(difference / scale < 1e-2, "\(name): relative error \(difference / scale)")
        }
    }

    /// Three Gaussian blobs in 16 dimensions, well separated.
    static func blobs(count: Int, seed: UInt64) -> Training.Dataset {
        var g = SplitMix64(seed: 100)
        let centers = (0..<3).map { _ in (0..<16).map { _ in Float.random(in: -2...2, using: &g) } }
        g = SplitMix64(seed: seed)
        var images: [Float] = []
        var labels: [UInt8] = []
        for _ in 0..<count {
            let label = Int(g.next() % 3)
            images += centers[label].map { $0 + Float(Training.gaussian(using: &g)) * 0.5 }
            labels.append(UInt8(label))
        }
        return (images, labels, count)
    }

    @Test(arguments: [Optimizer.adam(), .sgd(momentum: 0.9)])
    func tinyMLPLearnsSeparableData(optimizer: Optimizer) throws {
        let train = Self.blobs(count: 600, seed: 1), test = Self.blobs(count: 300, seed: 2)
        let architecture = ModelArchitectures.mlp(input: 16, hidden: [32], classes: 3)
        var lines: [String] = []
        let model = try Training.train(architecture, data: train, epochs: 5, batchSize: 32,
                                       learningRate: optimizer == .adam() ? 0.01 : 0.05, seed: 42,
                                       optimizer: optimizer) { lines.append($0) }
        let accuracy = try Training.evaluate(model, images: test.images, labels: test.labels)
        #expect(accuracy > 0.95, "accuracy \(accuracy)")
        #expect(lines.count == 5 && lines[0].hasPrefix("epoch 1/5: loss "))
        #expect(model.tensors.keys.sorted() == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"])
    }

    @Test func trainingIsReproducible() throws {
        let data = Self.blobs(count: 200, seed: 3)
        let architecture = ModelArchitectures.mlp(input: 16, hidden: [8], classes: 3)
        let a = try Training.train(architecture, data: data, epochs: 2, batchSize: 16, learningRate: 0.01, seed: 7)
        let b = try Training.train(architecture, data: data, epochs: 2, batchSize: 16, learningRate: 0.01, seed: 7)
        let c = try Training.train(architecture, data: data, epochs: 2, batchSize: 16, learningRate: 0.01, seed: 8)
        #expect(a == b)
        #expect(a != c)
    }

    /// Bright blob in the left or right half of an 8×8 image: the CNN path end to end.
    @Test func smallCNNLearnsLeftVersusRight() throws {
        var g = SplitMix64(seed: 4)
        var images: [Float] = [], labels: [UInt8] = []
        for _ in 0..<256 {
            let label = Int(g.next() % 2)
            var image = (0..<64).map { _ in Float.random(in: 0...0.3, using: &g) }
            let (y, x) = (Int(g.next() % 7), Int(g.next() % 3) + (label == 0 ? 0 : 4))
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] { image[(y + dy) * 8 + x + dx] = 1 }
            images += image
            labels.append(UInt8(label))
        }
        let architecture = ModelArchitectures.smallCNN(input: [1, 8, 8], classes: 2)
        let model = try Training.train(architecture, data: (images, labels, 256), epochs: 4, batchSize: 32,
                                       learningRate: 0.01, seed: 1)
        #expect(try Training.evaluate(model, images: images, labels: labels) > 0.95)
        try model.validate()
    }

    @Test func badTrainingDataIsRejected() {
        let architecture = ModelArchitectures.mlp(input: 4, hidden: [4], classes: 3)
        ModelFixtures.expectModelError(.badData, containing: ["label 3 of sample 1 is out of range", "3 classes"]) { () throws(ModelError) in
            _ = try Training.train(architecture, data: ([Float](repeating: 0, count: 8), [0, 3], 2),
                                   epochs: 1, batchSize: 2, learningRate: 0.1, seed: 1)
        }
        ModelFixtures.expectModelError(.badData, containing: ["need 8 image values, got 7"]) { () throws(ModelError) in
            _ = try Training.train(architecture, data: ([Float](repeating: 0, count: 7), [0, 1], 2),
                                   epochs: 1, batchSize: 2, learningRate: 0.1, seed: 1)
        }
    }

    @Test func architecturesHaveTheDocumentedShapes() throws {
        let cnn = ModelArchitectures.smallCNN().initialized(seed: 1)
        #expect(try cnn.activationShapes() == [[1, 28, 28], [16, 28, 28], [16, 28, 28], [16, 14, 14], [32, 14, 14],
                                               [32, 14, 14], [32, 7, 7], [1568], [128], [128], [10], [10]])
        let mlp = ModelArchitectures.mlp().initialized(seed: 1)
        #expect(mlp.tensors["fc1.weight"]!.shape == [256, 784])
        #expect(mlp.tensors["fc3.weight"]!.shape == [10, 128])
        #expect(mlp.tensors["fc1.bias"]!.values.allSatisfy { $0 == 0 })
        // He initialisation: variance 2 / fan-in.
        let w = mlp.tensors["fc1.weight"]!.values
        let variance = w.reduce(0) { $0 + Double($1) * Double($1) } / Double(w.count)
        #expect(abs(variance - 2.0 / 784) < 0.05 * 2.0 / 784)
    }
}
