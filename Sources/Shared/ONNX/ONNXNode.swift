// One graph node as the importer reads it: its name for messages, and typed access to its
// attributes that refuses unknown names and wrong attribute types instead of guessing.
import Foundation

/// A node plus what messages need: `label` is "node 'features.0' (Conv)".
struct ONNXNode {
    let proto: Onnx_NodeProto
    /// Position in the graph's node list (nodes without a name are called by it).
    let index: Int

    var opType: String { proto.opType }

    var label: String {
        let name = proto.name.isEmpty ? "#\(index)" : "'\(proto.name)'"
        return "node \(name) (\(proto.opType))"
    }

    /// Refuses attributes outside `known`, and any that refer to a function's attribute.
    func checkAttributes(_ known: Set<String>) throws(ONNXImportError) {
        for a in proto.attribute {
            if a.hasRefAttrName {
                throw ONNXImportError(.unsupportedAttribute, "\(label): attribute '\(a.name)' refers to a function attribute ('\(a.refAttrName)'); inline the function before importing")
            }
            guard known.contains(a.name) else {
                let list = known.sorted().joined(separator: ", ")
                throw ONNXImportError(.unsupportedAttribute, "\(label): attribute '\(a.name)' is not one the importer knows for \(opType) (\(list.isEmpty ? "none" : list)); export with a standard ONNX opset (13–17)")
            }
        }
    }

    private func attribute(_ name: String, _ type: Onnx_AttributeProto.AttributeType) throws(ONNXImportError) -> Onnx_AttributeProto? {
        guard let a = proto.attribute.last(where: { $0.name == name }) else { return nil }
        // Old exporters leave `type` unset; the value field then decides.
        guard !a.hasType || a.type == type else {
            throw ONNXImportError(.unsupportedAttribute, "\(label): attribute '\(name)' has type \(a.type), expected \(type)")
        }
        return a
    }

    func int(_ name: String) throws(ONNXImportError) -> Int64? { try attribute(name, .int)?.i }

    func float(_ name: String) throws(ONNXImportError) -> Float? { try attribute(name, .float)?.f }

    func ints(_ name: String) throws(ONNXImportError) -> [Int64]? { try attribute(name, .ints)?.ints }

    func floats(_ name: String) throws(ONNXImportError) -> [Float]? { try attribute(name, .floats)?.floats }

    func string(_ name: String) throws(ONNXImportError) -> String? {
        try attribute(name, .string).map { String(decoding: $0.s, as: UTF8.self) }
    }

    func tensor(_ name: String) throws(ONNXImportError) -> Onnx_TensorProto? { try attribute(name, .tensor)?.t }
}
