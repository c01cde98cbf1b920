// The committed ONNX fixtures (Tests/Models/onnx-fixtures, made by scripts/make-onnx-fixtures.sh
// with onnx + numpy) and helpers to read, mutate and import them.
import Foundation
import SRCore
import SRFormats
@testable import SRONNX
import Testing

enum ONNXFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Models/onnx-fixtures")

    static func path(_ fixture: String, _ file: String = "model.onnx") -> String {
        root.appendingPathComponent(fixture).appendingPathComponent(file).path
    }

    static func bytes(_ fixture: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: path(fixture)))
    }

    /// The fixture's protobuf, to mutate in a test.
    static func proto(_ fixture: String) throws -> Onnx_ModelProto {
        try ONNXImporter.decode(bytes(fixture), source: fixture)
    }

    /// A float array from one of the fixture's .npy files, as Double, with its shape.
    static func npy(_ fixture: String, _ file: String) throws -> (shape: [Int], values: [Double]) {
        let array = try Npy.read(contentsOf: path(fixture, file))
        switch array.data {
        case .float32(let v): return (array.shape, v.map(Double.init))
        case .float64(let v): return (array.shape, v)
        default: Issue.record("\(file) is not float"); return (array.shape, [])
        }
    }

    /// Imports a (mutated) protobuf and returns the error, failing the test if it imports.
    static func refusal(_ proto: Onnx_ModelProto, options: ONNXImportOptions = ONNXImportOptions(),
                        sourceLocation: SourceLocation = #_sourceLocation) -> ONNXImportError? {
        do {
            _ = try ONNXImporter.importModel(proto, source: "test.onnx", options: options)
            Issue.record("the model was imported", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    /// Checks code and message fragments of a refusal.
    static func expectRefusal(_ proto: Onnx_ModelProto, _ code: ONNXImportError.Code, mentions: [String],
                              options: ONNXImportOptions = ONNXImportOptions(),
                              sourceLocation: SourceLocation = #_sourceLocation) {
        guard let error = refusal(proto, options: options, sourceLocation: sourceLocation) else { return }
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        #expect(error.message.hasPrefix("test.onnx: "), "\(error)", sourceLocation: sourceLocation)
        for m in mentions {
            #expect(error.message.contains(m), "'\(m)' not in: \(error)", sourceLocation: sourceLocation)
        }
    }

    /// The index of the node named `name`.
    static func node(_ proto: Onnx_ModelProto, _ name: String) -> Int {
        proto.graph.node.firstIndex { $0.name == name }!
    }

    static func setAttribute(_ proto: inout Onnx_ModelProto, node name: String, _ attribute: String, ints: [Int64]) {
        let n = node(proto, name)
        proto.graph.node[n].attribute.removeAll { $0.name == attribute }
        var a = Onnx_AttributeProto()
        a.name = attribute
        a.type = .ints
        a.ints = ints
        proto.graph.node[n].attribute.append(a)
    }

    static func setAttribute(_ proto: inout Onnx_ModelProto, node name: String, _ attribute: String, int: Int64) {
        let n = node(proto, name)
        proto.graph.node[n].attribute.removeAll { $0.name == attribute }
        var a = Onnx_AttributeProto()
        a.name = attribute
        a.type = .int
        a.i = int
        proto.graph.node[n].attribute.append(a)
    }

    static func initializer(_ proto: Onnx_ModelProto, _ name: String) -> Int {
        proto.graph.initializer.firstIndex { $0.name == name }!
    }

    /// An initializer's float32 values, decoded here from raw_data (little-endian) or float_data.
    static func floats(_ proto: Onnx_ModelProto, _ name: String) -> [Double] {
        let t = proto.graph.initializer[initializer(proto, name)]
        if t.hasRawData {
            return stride(from: 0, to: t.rawData.count, by: 4).map { i in
                let b = t.rawData
                let bits = UInt32(b[b.startIndex + i]) | UInt32(b[b.startIndex + i + 1]) << 8
                    | UInt32(b[b.startIndex + i + 2]) << 16 | UInt32(b[b.startIndex + i + 3]) << 24
                return Double(Float(bitPattern: bits))
            }
        }
        return t.floatData.map(Double.init)
    }
}
