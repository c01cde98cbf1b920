// Initializers (TensorProto) into values, bounded: declared shapes are checked against
// ShapeLimits before anything is allocated, and stored bytes must match the shape exactly.
import Foundation
import SRCore

/// Reads the data of TensorProto values: float32 weights and int64 shapes, nothing else.
enum ONNXTensorDecoding {
    /// Highest rank accepted for any initializer.
    static let maximumRank = 8

    /// A float32 initializer as a flat array and its shape; `owner` names the node using it.
    static func floats(_ t: Onnx_TensorProto, owner: String) throws(ONNXImportError) -> (shape: [Int], values: [Double]) {
        try checkStorage(t, owner: owner)
        guard t.dataType == Onnx_TensorProto.DataType.float.rawValue else {
            throw ONNXImportError(.unsupportedDataType, """
                initializer '\(t.name)' (used by \(owner)) is \(typeName(t.dataType)), but only float32 \
                weights are imported; convert the model to float32 before exporting (in PyTorch: \
                model.float(), then torch.onnx.export)
                """)
        }
        let (shape, count) = try shapeAndCount(t, owner: owner)
        var values = [Double]()
        if t.hasRawData {
            guard t.floatData.isEmpty else { throw ambiguous(t, owner: owner) }
            guard t.rawData.count == count * 4 else {
                throw ONNXImportError(.badTensor, "initializer '\(t.name)' (used by \(owner)) has shape \(shape), so \(count * 4) bytes of float32 data, but its raw_data holds \(t.rawData.count) bytes; the file is damaged — export it again")
            }
            values.reserveCapacity(count)
            t.rawData.withUnsafeBytes { raw in
                for i in 0..<count {
                    let bits = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                    values.append(Double(Float(bitPattern: bits)))
                }
            }
        } else {
            guard t.floatData.count == count else {
                throw ONNXImportError(.badTensor, "initializer '\(t.name)' (used by \(owner)) has shape \(shape), so \(count) values, but its float_data holds \(t.floatData.count); the file is damaged — export it again")
            }
            values = t.floatData.map(Double.init)
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw ONNXImportError(.badTensor, "initializer '\(t.name)' (used by \(owner)) has the non-finite value \(values[bad]) at flat index \(bad); fix the weights before exporting")
        }
        return (shape, values)
    }

    /// An int64 initializer (a Reshape's target shape), at most `maxCount` values.
    static func int64s(_ t: Onnx_TensorProto, owner: String, maxCount: Int) throws(ONNXImportError) -> [Int64] {
        try checkStorage(t, owner: owner)
        guard t.dataType == Onnx_TensorProto.DataType.int64.rawValue else {
            throw ONNXImportError(.unsupportedDataType, "initializer '\(t.name)' (used by \(owner)) is \(typeName(t.dataType)); a shape must be int64")
        }
        let (shape, count) = try shapeAndCount(t, owner: owner)
        guard count <= maxCount else {
            throw ONNXImportError(.shapeMismatch, "initializer '\(t.name)' (used by \(owner)) has shape \(shape); a shape for this importer has at most \(maxCount) values")
        }
        if t.hasRawData {
            guard t.int64Data.isEmpty else { throw ambiguous(t, owner: owner) }
            guard t.rawData.count == count * 8 else {
                throw ONNXImportError(.badTensor, "initializer '\(t.name)' (used by \(owner)) needs \(count * 8) bytes of int64 data but holds \(t.rawData.count); the file is damaged — export it again")
            }
            return t.rawData.withUnsafeBytes { raw in
                (0..<count).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            }
        }
        guard t.int64Data.count == count else {
            throw ONNXImportError(.badTensor, "initializer '\(t.name)' (used by \(owner)) needs \(count) int64 values but holds \(t.int64Data.count); the file is damaged — export it again")
        }
        return t.int64Data
    }

    /// Elements the declared shape has, checked against ShapeLimits without overflow.
    static func elementCount(_ t: Onnx_TensorProto, owner: String) throws(ONNXImportError) -> Int {
        try shapeAndCount(t, owner: owner).count
    }

    private static func shapeAndCount(_ t: Onnx_TensorProto, owner: String) throws(ONNXImportError) -> (shape: [Int], count: Int) {
        guard t.dims.count <= maximumRank,
              t.dims.allSatisfy({ $0 >= 0 && $0 <= Int64(ShapeLimits.maxDimension) }) else {
            throw ONNXImportError(.tooLarge, "initializer '\(t.name)' (used by \(owner)) declares the shape \(t.dims.prefix(12)); each of at most \(maximumRank) dimensions must be 0…\(ShapeLimits.maxDimension)")
        }
        let shape = t.dims.map { Int($0) }
        var count = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, p <= ShapeLimits.maxElements else {
                throw ONNXImportError(.tooLarge, "initializer '\(t.name)' (used by \(owner)) declares the shape \(shape), more than \(ShapeLimits.maxElements) elements")
            }
            count = p
        }
        return (shape, count)
    }

    private static func checkStorage(_ t: Onnx_TensorProto, owner: String) throws(ONNXImportError) {
        if t.dataLocation == .external || !t.externalData.isEmpty {
            let file = t.externalData.first { $0.key == "location" }?.value ?? "another file"
            throw ONNXImportError(.externalData, """
                initializer '\(t.name)' (used by \(owner)) keeps its data in an external file \
                ('\(file)'); only self-contained models are imported — load it with onnx in Python \
                and save it whole: onnx.save_model(onnx.load('model.onnx'), 'whole.onnx', \
                save_as_external_data=False) (the result must stay under 2 GiB)
                """)
        }
        if t.hasSegment {
            throw ONNXImportError(.badTensor, "initializer '\(t.name)' (used by \(owner)) is stored in segments, which this importer does not read; save the model again with onnx.save_model")
        }
    }

    private static func ambiguous(_ t: Onnx_TensorProto, owner: String) -> ONNXImportError {
        ONNXImportError(.badTensor, "initializer '\(t.name)' (used by \(owner)) has both raw_data and typed data; the file is damaged — export it again")
    }

    /// The ONNX name of a data type, e.g. FLOAT16, for messages.
    static func typeName(_ raw: Int32) -> String {
        guard let type = Onnx_TensorProto.DataType(rawValue: Int(raw)) else { return "data type \(raw)" }
        return switch type {
        case .float: "FLOAT (float32)"
        case .double: "DOUBLE (float64)"
        case .float16: "FLOAT16"
        case .bfloat16: "BFLOAT16"
        default: "\(type)".uppercased()
        }
    }
}
