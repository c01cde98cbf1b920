// The graph as one path of nodes from its single input to its single output, with the constants
// (initializers and Constant nodes) the path's nodes read. Anything else — a branch, a skip
// connection, a second input, a node off the path — is refused with the node that breaks it.
import SRCore

/// A graph that is a simple chain, like PyTorch's `nn.Sequential`.
struct ONNXChain {
    let inputName: String
    /// The shape of one sample: the graph input's shape without its first (batch) dimension.
    let sampleShape: [Int]
    /// The graph input's batch dimension when it is a number rather than a symbol.
    let fixedBatch: Int?
    /// The nodes in order, from the one that reads the input to the one that writes the output.
    let nodes: [ONNXNode]
    /// Initializers and the outputs of Constant nodes, by name.
    let constants: [String: Onnx_TensorProto]
    let outputName: String
    /// The graph output's declared dimensions (nil: symbolic or unknown), if it declares a shape.
    let declaredOutputShape: [Int?]?

    init(_ graph: Onnx_GraphProto, maxNodes: Int) throws(ONNXImportError) {
        guard graph.node.count <= maxNodes else {
            throw ONNXImportError(.tooLarge, "the graph has \(graph.node.count) nodes; at most \(maxNodes) are imported")
        }
        guard !graph.node.isEmpty else {
            throw ONNXImportError(.notONNX, "the graph has no nodes; export the trained network with torch.onnx.export")
        }
        if !graph.sparseInitializer.isEmpty {
            throw ONNXImportError(.unsupportedDataType, "the graph has sparse initializers ('\(graph.sparseInitializer[0].values.name)'); save dense float32 weights")
        }
        var constants: [String: Onnx_TensorProto] = [:]
        for t in graph.initializer { constants[t.name] = t }
        var pathNodes: [ONNXNode] = []   // every node except Constant ones
        for (index, proto) in graph.node.enumerated() {
            let node = ONNXNode(proto: proto, index: index)
            guard proto.domain.isEmpty || proto.domain == "ai.onnx" else {
                throw ONNXImportError(.unsupportedOperator, "\(node.label) is from the operator domain '\(proto.domain)'; only standard ONNX operators (Gemm, MatMul, Add, Conv, BatchNormalization, Relu, MaxPool, Flatten, Reshape, Identity, Dropout, Softmax, Sigmoid) can be imported")
            }
            guard let first = proto.output.first, !first.isEmpty else {
                throw ONNXImportError(.notONNX, "\(node.label) has no output; the graph is malformed — export it again")
            }
            if proto.opType == "Constant" {
                constants[first] = try Self.constant(node)
            } else {
                pathNodes.append(node)
            }
        }

        let inputs = graph.input.filter { constants[$0.name] == nil }
        guard inputs.count == 1 else {
            let names = inputs.map { "'\($0.name)'" }.joined(separator: ", ")
            throw ONNXImportError(.notAChain, "the graph has \(inputs.count) inputs (\(names.isEmpty ? "none" : names)); the importer takes exactly one, the image or feature batch")
        }
        guard graph.output.count == 1 else {
            throw ONNXImportError(.notAChain, "the graph has \(graph.output.count) outputs; the importer takes exactly one, the logits or probabilities")
        }
        (sampleShape, fixedBatch) = try Self.inputShape(inputs[0])
        inputName = inputs[0].name
        outputName = graph.output[0].name
        declaredOutputShape = Self.declaredShape(graph.output[0])
        self.constants = constants

        // Who reads what (Constant nodes excluded: their values are constants, read by many).
        var readers: [String: [Int]] = [:]
        for (position, node) in pathNodes.enumerated() {
            for name in Set(node.proto.input) where !name.isEmpty { readers[name, default: []].append(position) }
        }
        var order: [ONNXNode] = []
        var visited = Set<Int>()
        var current = inputName
        var producer = "the graph input '\(inputName)'"
        while true {
            let users = readers[current] ?? []
            if current == outputName {
                guard users.isEmpty else {
                    throw ONNXImportError(.notAChain, "the graph output '\(current)' is also read by \(pathNodes[users[0]].label); the importer follows one path from the input to the output")
                }
                break
            }
            guard users.count == 1 else {
                if users.isEmpty {
                    throw ONNXImportError(.notAChain, "\(producer) writes '\(current)', which no node reads and which is not the graph output '\(outputName)'; the graph is not one path from its input to its output")
                }
                let list = users.prefix(4).map { pathNodes[$0].label }.joined(separator: ", ")
                let shapeHint = users.contains { pathNodes[$0].opType == "Shape" }
                    ? " — here the graph computes a shape at run time (x.view(x.size(0), -1) in PyTorch): export with torch.flatten(x, 1) or nn.Flatten() instead"
                    : ""
                throw ONNXImportError(.notAChain, "'\(current)' from \(producer) is read by \(users.count) nodes (\(list)); the importer follows one path (like nn.Sequential) and cannot import branches or skip connections\(shapeHint)")
            }
            let position = users[0]
            guard visited.insert(position).inserted else {
                throw ONNXImportError(.notAChain, "\(pathNodes[position].label) is reached twice: the graph has a cycle")
            }
            let node = pathNodes[position]
            try Self.checkInputs(node, data: current, constants: constants)
            for extra in node.proto.output.dropFirst() where !extra.isEmpty {
                if readers[extra] != nil || extra == outputName {
                    throw ONNXImportError(.notAChain, "\(node.label): its second output '\(extra)' is used; only the first output of a node can be imported (export in eval mode)")
                }
            }
            order.append(node)
            producer = node.label
            current = node.proto.output[0]
        }
        if let stray = pathNodes.indices.first(where: { !visited.contains($0) }) {
            throw ONNXImportError(.notAChain, "\(pathNodes[stray].label) is not on the path from the input '\(inputName)' to the output '\(outputName)'; the importer takes a simple chain of nodes (like nn.Sequential)")
        }
        nodes = order
    }

    /// Every input of `node` other than the activation `data` must be empty (an omitted
    /// optional input) or a constant, and `data` must be read once.
    private static func checkInputs(_ node: ONNXNode, data: String, constants: [String: Onnx_TensorProto]) throws(ONNXImportError) {
        let reads = node.proto.input.filter { $0 == data }.count
        guard reads == 1 else {
            throw ONNXImportError(.notAChain, "\(node.label) reads '\(data)' \(reads) times; only one use of the activations per node can be imported")
        }
        for name in node.proto.input where !name.isEmpty && name != data && constants[name] == nil {
            throw ONNXImportError(.notAChain, "\(node.label) reads '\(name)', which is neither the previous node's output nor a constant; the importer follows one path (like nn.Sequential) and cannot import branches or skip connections")
        }
    }

    /// The value of a Constant node as a tensor named after its output.
    private static func constant(_ node: ONNXNode) throws(ONNXImportError) -> Onnx_TensorProto {
        try node.checkAttributes(["value", "value_int", "value_ints", "value_float", "value_floats"])
        var t = Onnx_TensorProto()
        if let value = try node.tensor("value") {
            t = value
        } else if let v = try node.ints("value_ints") {
            t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
            t.dims = [Int64(v.count)]
            t.int64Data = v
        } else if let v = try node.int("value_int") {
            t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
            t.int64Data = [v]
        } else if let v = try node.float("value_float") {
            t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
            t.floatData = [v]
        } else if let v = try node.floats("value_floats") {
            t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
            t.dims = [Int64(v.count)]
            t.floatData = v
        } else {
            throw ONNXImportError(.unsupportedAttribute, "\(node.label) has no tensor, int or float value; only numeric constants can be imported")
        }
        t.name = node.proto.output[0]
        return t
    }

    private static func inputShape(_ input: Onnx_ValueInfoProto) throws(ONNXImportError) -> ([Int], Int?) {
        let name = "the graph input '\(input.name)'"
        guard case .tensorType(let type)? = input.type.value else {
            throw ONNXImportError(.unsupportedDataType, "\(name) is not a tensor; the importer takes a float32 batch [N, C, H, W] or [N, features]")
        }
        guard type.elemType == Onnx_TensorProto.DataType.float.rawValue else {
            throw ONNXImportError(.unsupportedDataType, "\(name) is \(ONNXTensorDecoding.typeName(type.elemType)); the importer takes float32 inputs — export with a float32 example input")
        }
        guard type.hasShape, (2...4).contains(type.shape.dim.count) else {
            let rank = type.hasShape ? "\(type.shape.dim.count) dimensions" : "no declared shape"
            throw ONNXImportError(.shapeMismatch, "\(name) has \(rank); the importer needs [N, features], [N, H, W] or [N, C, H, W] with known sizes — export with an example input of the real size")
        }
        var fixedBatch: Int? = nil
        if case .dimValue(let n)? = type.shape.dim[0].value, n > 0, n <= Int64(ShapeLimits.maxDimension) {
            fixedBatch = Int(n)
        }
        var shape: [Int] = []
        for (axis, dim) in type.shape.dim.enumerated().dropFirst() {
            guard case .dimValue(let n)? = dim.value, n >= 1, n <= Int64(ShapeLimits.maxDimension) else {
                let what: String = if case .dimParam(let p)? = dim.value { "the symbol '\(p)'" } else { "no size" }
                throw ONNXImportError(.shapeMismatch, "\(name) has \(what) at dimension \(axis); only the first (batch) dimension may vary — export with dynamic_axes on the batch only, and a size of 1…\(ShapeLimits.maxDimension) elsewhere")
            }
            shape.append(Int(n))
        }
        // Bounded here once (three dimensions of 2^24 would overflow Int): every later shape is
        // derived from this one without overflow.
        var elements = 1
        for d in shape {
            let (p, overflow) = elements.multipliedReportingOverflow(by: d)
            elements = overflow ? ShapeLimits.maxElements + 1 : min(p, ShapeLimits.maxElements + 1)
        }
        guard elements <= ShapeLimits.maxElements else {
            throw ONNXImportError(.tooLarge, "\(name) has \(shape) per sample, more than \(ShapeLimits.maxElements) elements")
        }
        return (shape, fixedBatch)
    }

    private static func declaredShape(_ output: Onnx_ValueInfoProto) -> [Int?]? {
        guard case .tensorType(let type)? = output.type.value, type.hasShape else { return nil }
        return type.shape.dim.map { dim in
            if case .dimValue(let n)? = dim.value, n >= 0, n <= Int64(ShapeLimits.maxDimension) { return Int(n) }
            return nil
        }
    }
}
