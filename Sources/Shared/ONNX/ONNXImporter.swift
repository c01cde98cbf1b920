// ONNX files into the project's models (model.json + model.safetensors): read with a size bound,
// decode the protobuf, check that the graph is a chain of supported operators, fold biases and
// BatchNormalization, and validate the result as any other model.
import Foundation
import SRCore
import SRFormats
import SRNeural
import SwiftProtobuf

/// A model imported from ONNX, and what the import did.
public struct ONNXImportResult: Sendable {
    public var model: Model
    /// One line per layer of the new model: which nodes it came from.
    public var summary: [String]
    /// The exporter named in the file (e.g. "pytorch 2.5.1"), or "unknown".
    public var producer: String
    /// The file's ONNX opset (the default domain's).
    public var opset: Int
}

/// Imports feed-forward ONNX classifiers: a chain of Gemm/MatMul(+Add), Conv (3×3, stride 1,
/// padding 1), BatchNormalization (folded), Relu, MaxPool (2×2, stride 2), Flatten/Reshape,
/// Identity/Dropout and a final Softmax/Sigmoid. Everything else is refused with the node's
/// name and operator type.
public enum ONNXImporter {
    /// The oldest opset accepted: BatchNormalization, Gemm and Dropout have their present
    /// meaning from opset 7 on.
    static let minimumOpset = 7

    /// Reads and imports the file at `path`. Errors start with the path.
    public static func importModel(contentsOf path: String,
                                   options: ONNXImportOptions = ONNXImportOptions()) throws(ONNXImportError) -> ONNXImportResult {
        try importModel(read(path, limit: options.maxFileBytes), source: path, options: options)
    }

    /// Imports the bytes of an ONNX file. `source` (a path, usually) starts every error message.
    public static func importModel(_ bytes: Data, source: String = "<memory>",
                                   options: ONNXImportOptions = ONNXImportOptions()) throws(ONNXImportError) -> ONNXImportResult {
        guard bytes.count <= options.maxFileBytes else {
            throw ONNXImportError(.tooLarge, "\(source): \(bytes.count) bytes; the importer reads at most \(options.maxFileBytes)")
        }
        return try importModel(decode(bytes, source: source), source: source, options: options)
    }

    /// The protobuf of an ONNX file, or `.notONNX` with the decoder's reason.
    static func decode(_ bytes: Data, source: String) throws(ONNXImportError) -> Onnx_ModelProto {
        guard !bytes.isEmpty else {
            throw ONNXImportError(.notONNX, "\(source): the file is empty; export the model with torch.onnx.export")
        }
        do {
            return try Onnx_ModelProto(serializedBytes: bytes)
        } catch {
            let reason: String = switch error as? BinaryDecodingError {
            case .truncated?: "it ends in the middle of a field (truncated: was the download or copy cut off?)"
            case .messageDepthLimit?: "it nests messages deeper than the decoder allows"
            case .invalidUTF8?: "a text field is not UTF-8"
            default: "the bytes are not valid protobuf (\(error))"
            }
            throw ONNXImportError(.notONNX, "\(source): not an ONNX model: \(reason); give the .onnx file written by torch.onnx.export or onnx.save_model")
        }
    }

    /// Imports a decoded model.
    static func importModel(_ proto: Onnx_ModelProto, source: String,
                            options: ONNXImportOptions) throws(ONNXImportError) -> ONNXImportResult {
        do {
            return try convert(proto, options: options)
        } catch {
            throw ONNXImportError(error.code, "\(source): \(error.message)")
        }
    }

    private static func convert(_ proto: Onnx_ModelProto, options: ONNXImportOptions) throws(ONNXImportError) -> ONNXImportResult {
        guard proto.hasGraph, proto.irVersion > 0 else {
            throw ONNXImportError(.notONNX, "not an ONNX model (no \(proto.hasGraph ? "IR version" : "graph")); give the .onnx file written by torch.onnx.export or onnx.save_model")
        }
        guard let opset = proto.opsetImport.first(where: { $0.domain.isEmpty || $0.domain == "ai.onnx" })?.version else {
            throw ONNXImportError(.notONNX, "the model imports no standard ONNX opset; export it with torch.onnx.export(…, opset_version=17)")
        }
        guard opset >= minimumOpset, opset <= 1000 else {
            throw ONNXImportError(.unsupportedOperator, "the model uses ONNX opset \(opset); the importer reads opsets \(minimumOpset) and later — export with opset_version between 13 and 17")
        }
        let chain = try ONNXChain(proto.graph, maxNodes: options.maxNodes)
        var builder = ONNXLayerBuilder(chain: chain, opset: Int(opset), maxParameters: options.maxParameterElements)
        try builder.build()

        let outputs = builder.shape
        if let declared = chain.declaredOutputShape {
            let matches = declared.count == outputs.count + 1
                && zip(declared.dropFirst(), outputs).allSatisfy { $0.0 == nil || $0.0 == $0.1 }
            guard matches else {
                let text = declared.map { $0.map(String.init) ?? "?" }.joined(separator: ", ")
                throw ONNXImportError(.shapeMismatch, "the graph declares its output '\(chain.outputName)' as [\(text)], but its nodes produce [N, \(ONNXLayerBuilder.list(outputs))]")
            }
        }

        var layers: [LayerSpec] = []
        var tensors: [String: Tensor] = [:]
        var summary: [String] = []
        var counts = (conv: 0, dense: 0)
        var graphHead: LayerSpec? = nil
        for layer in builder.layers {
            switch layer {
            case .linear(let linear):
                let name: String
                switch linear.kind {
                case .dense: counts.dense += 1; name = "fc\(counts.dense)"
                case .conv3x3: counts.conv += 1; name = "conv\(counts.conv)"
                }
                guard let (w, b) = linear.tensors() else {
                    throw ONNXImportError(.badTensor, "folding \(linear.sources.joined(separator: " + ")) gives values beyond float32; check the BatchNormalization statistics and Gemm's alpha and beta")
                }
                tensors[name + ".weight"] = w
                tensors[name + ".bias"] = b
                let spec: LayerSpec = linear.kind == .dense
                    ? .dense(weights: name + ".weight", bias: name + ".bias")
                    : .conv2d(weights: name + ".weight", bias: name + ".bias")
                layers.append(spec)
                summary.append("\(name) (\(linear.kind == .dense ? "dense" : "conv2d") \(w.shape)) ← \(linear.sources.joined(separator: " + "))")
            case .relu: layers.append(.relu)
            case .maxpool2: layers.append(.maxpool2)
            case .flatten: layers.append(.flatten)
            case .softmax: graphHead = .softmax
            case .sigmoid: graphHead = .sigmoid
            }
        }
        let head: LayerSpec? = switch options.head {
        case .auto: graphHead ?? (outputs.count == 1 && outputs[0] >= 2 ? .softmax : nil)
        case .softmax: .softmax
        case .sigmoid: .sigmoid
        case .none: nil
        }
        if let head { layers.append(head) }
        if let classes = options.classes, classes.count != outputs.reduce(1, *) {
            throw ONNXImportError(.shapeMismatch, "\(classes.count) class names were given, but the model has \(outputs.reduce(1, *)) outputs")
        }

        var manifest = ModelManifest(input: chain.sampleShape, layers: layers, resolutions: options.resolutions,
                                     bitsPerUpgrade: options.bitsPerUpgrade)
        manifest.classes = options.classes
        let model = Model(manifest: manifest, tensors: tensors)
        do {
            try model.validate()
        } catch {
            throw ONNXImportError(.invalidModel, "the imported model is not valid: \(error.message)")
        }
        let producer = [proto.producerName, proto.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        return ONNXImportResult(model: model, summary: summary, producer: producer.isEmpty ? "unknown" : producer,
                                opset: Int(opset))
    }

    /// At most `limit` bytes of the file; a longer file (or device) is refused without reading on.
    static func read(_ path: String, limit: Int) throws(ONNXImportError) -> Data {
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > limit {
            throw ONNXImportError(.tooLarge, "\(path): \(size) bytes; the importer reads at most \(limit) (ONNXImportOptions.maxFileBytes)")
        }
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        } catch {
            throw ONNXImportError(.io, "\(path): cannot open the ONNX file: \(OSReason.of(error))")
        }
        defer { try? handle.close() }
        let data: Data
        do {
            data = try handle.read(upToCount: limit + 1) ?? Data()
        } catch {
            throw ONNXImportError(.io, "\(path): cannot read the ONNX file: \(OSReason.of(error))")
        }
        guard data.count <= limit else {
            throw ONNXImportError(.tooLarge, "\(path): more than \(limit) bytes; the importer reads at most \(limit) (ONNXImportOptions.maxFileBytes)")
        }
        return data
    }
}
