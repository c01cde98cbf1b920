// A network on disk and in memory: its manifest plus named float32 tensors; loading from a
// directory or one safetensors file, saving, and shape validation with layer-by-layer messages.
import SRCore
import SRFormats
import Foundation

/// A sequential network: the manifest says what the layers are, `tensors` hold their weights.
///
/// On disk a model is either a directory with `model.json` (the manifest) and
/// `model.safetensors`, or one `.safetensors` file whose `__metadata__` carries the manifest
/// JSON under the key `"sr-model"`.
public struct Model: Sendable, Equatable {
    public var manifest: ModelManifest
    public var tensors: [String: Tensor]

    public init(manifest: ModelManifest, tensors: [String: Tensor]) {
        self.manifest = manifest
        self.tensors = tensors
    }

    static let manifestFile = "model.json"
    static let weightsFile = "model.safetensors"
    /// The layer kinds `LayerSpec` encodes, as they appear as keys in the manifest JSON.
    static let layerKinds = ["dense", "conv2d", "maxpool2", "relu", "flatten", "softmax", "sigmoid"]

    // MARK: Files

    /// Loads and validates a model from a directory (`model.json` + `model.safetensors`), a
    /// manifest path (`name.json`, weights in `name.safetensors` beside it) or a single
    /// `.safetensors` file with the manifest in its metadata.
    public static func load(from path: String) throws(ModelError) -> Model {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ModelError(.io, "\(path): no such file or directory; a model is a directory with "
                             + "\(manifestFile) and \(weightsFile), or a single .safetensors file")
        }
        let model: Model
        if isDirectory.boolValue {
            let directory = URL(fileURLWithPath: path)
            model = try load(manifest: directory.appendingPathComponent(manifestFile).path,
                             weights: directory.appendingPathComponent(weightsFile).path)
        } else if path.hasSuffix(".safetensors") {
            let file = try ModelError.wrapping { () throws(SafetensorsError) in try Safetensors.read(contentsOf: path) }
            guard let json = file.metadata[ModelManifest.formatName] else {
                throw ModelError(.badManifest, """
                    \(path): no '\(ModelManifest.formatName)' entry in the safetensors __metadata__, so \
                    the file has weights but no manifest; put a \(manifestFile) beside it and load the \
                    directory, or save the model with Model.save(toFile:)
                    """)
            }
            model = Model(manifest: try decodeManifest(Data(json.utf8), source: "\(path) (__metadata__)"),
                          tensors: file.tensors)
        } else {
            let url = URL(fileURLWithPath: path)
            let weights = url.deletingPathExtension().appendingPathExtension("safetensors").path
            model = try load(manifest: path, weights: weights)
        }
        try model.validate()
        return model
    }

    private static func load(manifest path: String, weights: String) throws(ModelError) -> Model {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ModelError(.io, "\(path): cannot read the manifest: \(ModelError.osReason(error))")
        }
        let manifest = try decodeManifest(data, source: path)
        return Model(manifest: manifest, tensors: try ModelError.wrapping { () throws(SafetensorsError) in try Safetensors.read(contentsOf: weights) }.tensors)
    }

    /// Writes `model.json` and `model.safetensors` into `directory` (created if missing).
    public func save(to directory: String) throws(ModelError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelError(.io, "\(directory): cannot create the model directory: \(ModelError.osReason(error))")
        }
        let url = URL(fileURLWithPath: directory)
        try ModelError.wrapping { () throws(SafetensorsError) in
            try Safetensors.write(Safetensors.File(tensors: tensors),
                                  to: url.appendingPathComponent(Model.weightsFile).path)
            try Safetensors.writeAtomically(Model.encodeManifest(manifest),
                                            to: url.appendingPathComponent(Model.manifestFile).path)
        }
    }

    /// Writes one self-contained `.safetensors` file with the manifest in its metadata.
    public func save(toFile path: String) throws(ModelError) {
        let json = String(decoding: Model.encodeManifest(manifest, pretty: false), as: UTF8.self)
        try ModelError.wrapping { () throws(SafetensorsError) in
            try Safetensors.write(Safetensors.File(tensors: tensors, metadata: [ModelManifest.formatName: json]),
                                  to: path)
        }
    }

    // MARK: Manifest JSON

    /// The manifest as JSON with sorted keys (stable bytes for diffs and hashes).
    public static func encodeManifest(_ manifest: ModelManifest, pretty: Bool = true) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys]
        // Encoding plain strings, ints and arrays cannot fail.
        return Array(try! encoder.encode(manifest))
    }

    /// Parses manifest JSON. Layers are checked before decoding because Codable's own message for
    /// an unknown enum case ("Invalid number of keys found") does not say which layer is wrong.
    public static func decodeManifest(_ data: Data, source: String = "<memory>") throws(ModelError) -> ModelManifest {
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let layers = object["layers"] as? [Any] {
            for (index, layer) in layers.enumerated() {
                try checkLayerJSON(layer, index: index, source: source)
            }
        }
        let manifest: ModelManifest
        do {
            manifest = try JSONDecoder().decode(ModelManifest.self, from: data)
        } catch let error as DecodingError {
            throw ModelError(.badManifest, "\(source): not a valid model manifest: \(Safetensors.describe(error))")
        } catch {
            throw ModelError(.badManifest, "\(source): not a valid model manifest: \(error)")
        }
        guard manifest.format == ModelManifest.formatName else {
            throw ModelError(.badManifest, "\(source): format is '\(manifest.format)', expected '\(ModelManifest.formatName)'")
        }
        guard manifest.version == 1 else {
            throw ModelError(.badManifest, "\(source): manifest version \(manifest.version) is not supported (only 1)")
        }
        try manifest.validate(source: source)
        return manifest
    }

    private static func checkLayerJSON(_ layer: Any, index: Int, source: String) throws(ModelError) {
        let supported = layerKinds.joined(separator: ", ")
        if let kind = layer as? String {
            let hint = layerKinds.contains(kind) ? "write {\"\(kind)\": {}}" : "supported kinds: \(supported)"
            throw ModelError(.badManifest, "\(source): layers[\(index)] is the string '\(kind)'; a layer is an object keyed by its kind — \(hint)")
        }
        guard let object = layer as? [String: Any], object.count == 1, let kind = object.keys.first else {
            throw ModelError(.badManifest, """
                \(source): layers[\(index)] must be an object with exactly one key, the layer kind, e.g. \
                {"relu": {}} or {"dense": {"weights": "fc1.weight", "bias": "fc1.bias"}}
                """)
        }
        guard layerKinds.contains(kind) else {
            throw ModelError(.unknownLayer, "\(source): unknown layer kind '\(kind)' at layers[\(index)]; supported: \(supported)")
        }
    }

    // MARK: Validation

    /// Checks that every layer's tensors exist, are finite and fit the shape flowing into that
    /// layer from `manifest.input`. Errors name the layer index (0-based, as in `layers[i]`).
    public func validate() throws(ModelError) {
        _ = try activationShapes()
    }

    /// The shape of one sample entering each layer, plus the output: element 0 is
    /// `manifest.input`, element i + 1 what layer i produces.
    public func activationShapes() throws(ModelError) -> [[Int]] {
        try manifest.validate()
        let input = manifest.input
        guard !input.isEmpty, input.allSatisfy({ $0 > 0 }) else {
            throw ModelError(.shapeMismatch, "manifest input shape \(input) must be non-empty with positive dimensions, e.g. [784] or [1, 28, 28]")
        }
        guard !manifest.layers.isEmpty else {
            throw ModelError(.badManifest, "the manifest has no layers")
        }
        var shapes = [input]
        var shape = input
        for (index, layer) in manifest.layers.enumerated() {
            shape = try outputShape(of: layer, index: index, input: shape)
            shapes.append(shape)
        }
        return shapes
    }

    private func outputShape(of layer: LayerSpec, index: Int, input: [Int]) throws(ModelError) -> [Int] {
        let here = "layer \(index) (\(Model.kind(of: layer)))"
        func tensor(_ name: String) throws(ModelError) -> Tensor {
            guard let t = tensors[name] else {
                let known = tensors.keys.sorted()
                let list = known.prefix(12).map { "'\($0)'" }.joined(separator: ", ") + (known.count > 12 ? ", …" : "")
                throw ModelError(.missingTensor, "\(here): tensor '\(name)' is not in the weights file (it has \(known.isEmpty ? "no tensors" : list))")
            }
            if let bad = t.values.firstIndex(where: { !$0.isFinite }) {
                throw ModelError(.badData, "\(here): tensor '\(name)' has the non-finite value \(t.values[bad]) at flat index \(bad)")
            }
            return t
        }
        func checkBias(_ name: String, outputs: Int, weights: String) throws(ModelError) {
            let b = try tensor(name)
            guard b.shape == [outputs] else {
                throw ModelError(.shapeMismatch, "\(here): tensor '\(name)' has shape \(b.shape) but '\(weights)' has \(outputs) outputs, so the bias must be [\(outputs)]")
            }
        }
        let isLast = index == manifest.layers.count - 1
        switch layer {
        case .dense(let weights, let bias):
            guard input.count == 1 else {
                throw ModelError(.shapeMismatch, "\(here): its input has shape \(input); a dense layer needs a flat vector — add a flatten layer before it")
            }
            let w = try tensor(weights)
            guard w.shape.count == 2 else {
                throw ModelError(.shapeMismatch, "\(here): tensor '\(weights)' has shape \(w.shape) but dense weights must be 2-D [out, in]")
            }
            guard w.shape[1] == input[0] else {
                throw ModelError(.shapeMismatch, "\(here): tensor '\(weights)' has shape \(w.shape) but the input to this layer has \(input[0]) features")
            }
            try checkBias(bias, outputs: w.shape[0], weights: weights)
            return [w.shape[0]]
        case .conv2d(let weights, let bias):
            guard input.count == 3 else {
                throw ModelError(.shapeMismatch, "\(here): its input has shape \(input); conv2d needs [channels, height, width] — e.g. set the manifest input to [1, 28, 28]")
            }
            let w = try tensor(weights)
            guard w.shape.count == 4, w.shape[2] == 3, w.shape[3] == 3 else {
                throw ModelError(.shapeMismatch, "\(here): tensor '\(weights)' has shape \(w.shape) but conv2d kernels must be [outC, inC, 3, 3]")
            }
            guard w.shape[1] == input[0] else {
                throw ModelError(.shapeMismatch, "\(here): tensor '\(weights)' has shape \(w.shape) but the input to this layer has \(input[0]) channels (shape \(input))")
            }
            try checkBias(bias, outputs: w.shape[0], weights: weights)
            _ = try ModelManifest.elements([w.shape[0], input[1], input[2]], source: here)
            return [w.shape[0], input[1], input[2]]
        case .maxpool2:
            guard input.count == 3, input[1] >= 2, input[2] >= 2 else {
                throw ModelError(.shapeMismatch, "\(here): its input has shape \(input); 2×2 pooling needs [channels, height, width] with height and width at least 2")
            }
            return [input[0], input[1] / 2, input[2] / 2]
        case .relu:
            return input
        case .flatten:
            return [try ModelManifest.elements(input, source: here)]
        case .softmax, .sigmoid:
            guard isLast else {
                throw ModelError(.badManifest, "\(here): a classification head must be the last layer (it is layer \(index) of \(manifest.layers.count))")
            }
            guard input.count == 1 else {
                throw ModelError(.shapeMismatch, "\(here): its input has shape \(input); a head needs the flat logits of a dense layer")
            }
            if case .sigmoid = layer, input != [1] {
                throw ModelError(.shapeMismatch, "\(here): its input has \(input[0]) logits; a sigmoid head takes exactly one — use softmax for several classes")
            }
            return input
        }
    }

    /// The JSON key of a layer kind, for messages.
    static func kind(of layer: LayerSpec) -> String {
        switch layer {
        case .dense: "dense"
        case .conv2d: "conv2d"
        case .maxpool2: "maxpool2"
        case .relu: "relu"
        case .flatten: "flatten"
        case .softmax: "softmax"
        case .sigmoid: "sigmoid"
        }
    }
}
