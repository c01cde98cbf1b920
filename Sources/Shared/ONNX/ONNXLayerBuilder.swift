// Node by node, the chain becomes the project's layer set: each supported operator is checked
// against what the layer can express (a 3×3 stride-1 padding-1 convolution, 2×2 stride-2
// pooling, …) and translated; biases and BatchNormalization fold into the linear layer before it.
import SRCore
import SRNeural

/// Translates an `ONNXChain` into layers, tracking the shape of one sample.
struct ONNXLayerBuilder {
    enum Layer: Equatable {
        case linear(ImportedLinearLayer)
        case relu, maxpool2, flatten, softmax, sigmoid
    }

    /// The operators the importer translates, for messages.
    static let supportedOperators = "Gemm, MatMul, Add (a bias), Conv, BatchNormalization, Relu, MaxPool, Flatten, Reshape, Identity, Dropout, Softmax, Sigmoid"

    private(set) var layers: [Layer] = []
    /// One sample's shape after the layers so far.
    private(set) var shape: [Int]
    /// Float32 parameters decoded so far, bounded by `maxParameters`.
    private(set) var parameters = 0
    /// A bias Add or a BatchNormalization may fold into the last layer: it is linear and only
    /// no-ops came after it.
    private var linearIsOpen = false
    /// What the last layer came from, for messages about what cannot follow it.
    private var previous: String

    private let chain: ONNXChain
    private let opset: Int
    private let maxParameters: Int

    init(chain: ONNXChain, opset: Int, maxParameters: Int) {
        self.chain = chain
        self.opset = opset
        self.maxParameters = maxParameters
        shape = chain.sampleShape
        previous = "the graph input '\(chain.inputName)'"
    }

    /// Translates every node of the chain.
    mutating func build() throws(ONNXImportError) {
        var data = chain.inputName
        for (position, node) in chain.nodes.enumerated() {
            try add(node, data: data, isLast: position == chain.nodes.count - 1)
            data = node.proto.output[0]
        }
    }

    private mutating func add(_ node: ONNXNode, data: String, isLast: Bool) throws(ONNXImportError) {
        let keepsOpen: Bool
        switch node.opType {
        case "Gemm": try gemm(node, data: data); keepsOpen = true
        case "MatMul": try matMul(node, data: data); keepsOpen = true
        case "Conv": try conv(node, data: data); keepsOpen = true
        case "Add": try addBias(node, data: data); keepsOpen = true
        case "BatchNormalization": try batchNormalization(node, data: data); keepsOpen = true
        case "Relu":
            try node.checkAttributes([])
            layers.append(.relu)
            keepsOpen = false
        case "MaxPool": try maxPool(node); keepsOpen = false
        case "Flatten": keepsOpen = try flatten(node)
        case "Reshape": keepsOpen = try reshape(node, data: data)
        case "Identity":
            try node.checkAttributes([])
            keepsOpen = linearIsOpen
        case "Dropout":
            try dropout(node, data: data)
            keepsOpen = linearIsOpen
        case "Softmax", "Sigmoid": try head(node, isLast: isLast); keepsOpen = false
        default:
            throw ONNXImportError(.unsupportedOperator, "\(node.label): the operator type '\(node.opType)' is not supported; the importer translates \(Self.supportedOperators)")
        }
        linearIsOpen = keepsOpen
        if !["Identity", "Dropout"].contains(node.opType) { previous = node.label }
    }

    // MARK: Linear layers

    /// Gemm: Y = alpha·A·op(B) + beta·C on A = [N, features]; alpha and beta fold into W and b.
    private mutating func gemm(_ node: ONNXNode, data: String) throws(ONNXImportError) {
        try node.checkAttributes(["alpha", "beta", "transA", "transB"])
        try requireData(node, data: data, at: 0)
        guard try node.int("transA") ?? 0 == 0 else {
            throw ONNXImportError(.unsupportedAttribute, "\(node.label): transA = 1 transposes the activations; only Gemm on [N, features] rows can be imported")
        }
        let features = try flatInput(node)
        let transB = try node.int("transB") ?? 0 != 0
        let alpha = Double(try node.float("alpha") ?? 1), beta = Double(try node.float("beta") ?? 1)
        let (bShape, b) = try floats(node, input: 1)
        guard bShape.count == 2, bShape[transB ? 1 : 0] == features else {
            throw ONNXImportError(.shapeMismatch, "\(node.label): B has shape \(bShape), but the input has \(features) features, so B must be \(transB ? "[out, \(features)]" : "[\(features), out]") (transB = \(transB ? 1 : 0))")
        }
        let outputs = bShape[transB ? 0 : 1]
        var weights = transB ? b : Self.transposed(b, rows: features, columns: outputs)
        if alpha != 1 { for i in weights.indices { weights[i] *= alpha } }
        var bias = [Double](repeating: 0, count: outputs)
        if node.proto.input.count > 2, !node.proto.input[2].isEmpty {
            let (cShape, c) = try floats(node, input: 2)
            bias = try Self.broadcastBias(c, shape: cShape, rows: outputs, layout: .dense, node: node)
            if beta != 1 { for i in bias.indices { bias[i] *= beta } }
        }
        layers.append(.linear(ImportedLinearLayer(kind: .dense, rows: outputs, inner: features, weights: weights,
                                                  bias: bias, source: node.label)))
        shape = [outputs]
    }

    /// MatMul of the activations [N, features] by a constant [features, out]: a dense layer
    /// without bias (an Add after it supplies one).
    private mutating func matMul(_ node: ONNXNode, data: String) throws(ONNXImportError) {
        try node.checkAttributes([])
        try requireData(node, data: data, at: 0)
        let features = try flatInput(node)
        let (bShape, b) = try floats(node, input: 1)
        guard bShape.count == 2, bShape[0] == features else {
            throw ONNXImportError(.shapeMismatch, "\(node.label): the constant operand has shape \(bShape), but the input has \(features) features, so it must be [\(features), out]")
        }
        layers.append(.linear(ImportedLinearLayer(kind: .dense, rows: bShape[1], inner: features,
                                                  weights: Self.transposed(b, rows: features, columns: bShape[1]),
                                                  bias: [Double](repeating: 0, count: bShape[1]), source: node.label)))
        shape = [bShape[1]]
    }

    /// Conv as the layer set has it: 3×3, stride 1, zero padding 1, one group, no dilation.
    private mutating func conv(_ node: ONNXNode, data: String) throws(ONNXImportError) {
        try node.checkAttributes(["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])
        try requireData(node, data: data, at: 0)
        guard shape.count == 3 else {
            throw ONNXImportError(.shapeMismatch, "\(node.label): its input has shape [N, \(Self.list(shape))]; Conv needs images [N, C, H, W]")
        }
        let (wShape, w) = try floats(node, input: 1)
        guard wShape.count == 4 else {
            throw ONNXImportError(.shapeMismatch, "\(node.label): the weights have shape \(wShape); a 2-D convolution's are [outC, inC, kH, kW]")
        }
        let group = try node.int("group") ?? 1
        guard group == 1 else {
            throw ONNXImportError(.unsupportedAttribute, "\(node.label): group = \(group) (grouped or depthwise convolution) is not supported; the project's conv2d layer convolves all input channels (group = 1)")
        }
        guard wShape[1] == shape[0] else {
            throw ONNXImportError(.shapeMismatch, "\(node.label): the weights have shape \(wShape) but the input has \(shape[0]) channels")
        }
        let kernel = try node.ints("kernel_shape").map { $0.map(Int.init) } ?? [wShape[2], wShape[3]]
        let strides = try node.ints("strides") ?? [1, 1]
        let dilations = try node.ints("dilations") ?? [1, 1]
        let autoPad = try node.string("auto_pad") ?? "NOTSET"
        let pads: [Int64]
        switch autoPad {
        case "NOTSET": pads = try node.ints("pads") ?? [0, 0, 0, 0]
        // With a 3×3 kernel and stride 1 both SAME modes pad 1 on every side.
        case "SAME_UPPER", "SAME_LOWER": pads = kernel == [3, 3] && strides == [1, 1] ? [1, 1, 1, 1] : [-1]
        default: pads = [0, 0, 0, 0]
        }
        guard kernel == [wShape[2], wShape[3]] else {
            throw ONNXImportError(.shapeMismatch, "\(node.label): kernel_shape \(kernel) disagrees with the weights' shape \(wShape)")
        }
        guard kernel == [3, 3], strides == [1, 1], dilations == [1, 1], pads == [1, 1, 1, 1] else {
            throw ONNXImportError(.unsupportedAttribute, """
                \(node.label): kernel \(Self.list(kernel, "×")), strides [\(Self.list(strides))], \
                dilations [\(Self.list(dilations))], \(autoPad == "NOTSET" ? "pads [\(Self.list(pads))]" : "auto_pad \(autoPad)") \
                is not supported: the project's conv2d layer is a 3×3 kernel with stride 1, no dilation \
                and zero padding 1 on every side (PyTorch: nn.Conv2d(in, out, 3, padding=1))
                """)
        }
        var bias = [Double](repeating: 0, count: wShape[0])
        if node.proto.input.count > 2, !node.proto.input[2].isEmpty {
            let (bShape, b) = try floats(node, input: 2)
            guard bShape == [wShape[0]] else {
                throw ONNXImportError(.shapeMismatch, "\(node.label): the bias has shape \(bShape) but there are \(wShape[0]) output channels")
            }
            bias = b
        }
        let (h, width) = (shape[1], shape[2])
        let out = [wShape[0], h, width]
        guard out.reduce(1, *) <= ShapeLimits.maxElements else {
            throw ONNXImportError(.tooLarge, "\(node.label): its output [\(Self.list(out))] has more than \(ShapeLimits.maxElements) elements per sample")
        }
        layers.append(.linear(ImportedLinearLayer(kind: .conv3x3(inChannels: shape[0]), rows: wShape[0], inner: shape[0] * 9,
                                                  weights: w, bias: bias, source: node.label)))
        shape = out
    }

    /// Add of a constant right after a linear layer: its bias.
    private mutating func addBias(_ node: ONNXNode, data: String) throws(ONNXImportError) {
        try node.checkAttributes([])
        guard node.proto.input.count == 2 else {
            throw ONNXImportError(.notAChain, "\(node.label) has \(node.proto.input.count) inputs; Add takes two")
        }
        guard linearIsOpen, case .linear(var layer)? = layers.last else {
            throw ONNXImportError(.unsupportedOperator, "\(node.label) follows \(previous); only an Add of a constant bias right after MatMul, Gemm or Conv can be imported")
        }
        let (cShape, c) = try floats(node, input: node.proto.input[0] == data ? 1 : 0)
        let layout: BiasLayout = if case .conv3x3 = layer.kind { .channels } else { .dense }
        let add = try Self.broadcastBias(c, shape: cShape, rows: layer.rows, layout: layout, node: node)
        for o in 0..<layer.rows { layer.bias[o] += add[o] }
        layer.sources.append(node.label)
        layers[layers.count - 1] = .linear(layer)
    }

    /// Inference BatchNormalization folded into the linear layer before it.
    private mutating func batchNormalization(_ node: ONNXNode, data: String) throws(ONNXImportError) {
        try node.checkAttributes(["epsilon", "momentum", "spatial", "training_mode"])
        try requireData(node, data: data, at: 0)
        guard try node.int("training_mode") ?? 0 == 0 else {
            throw ONNXImportError(.unsupportedAttribute, "\(node.label): training_mode = 1 normalizes with batch statistics; export the model in eval mode (model.eval() before torch.onnx.export)")
        }
        guard try node.int("spatial") ?? 1 == 1 else {
            throw ONNXImportError(.unsupportedAttribute, "\(node.label): spatial = 0 (per-position statistics) is not supported")
        }
        guard node.proto.input.count == 5 else {
            throw ONNXImportError(.notONNX, "\(node.label) has \(node.proto.input.count) inputs; BatchNormalization takes X, scale, B, mean and var")
        }
        guard linearIsOpen, case .linear(var layer)? = layers.last else {
            throw ONNXImportError(.unsupportedOperator, "\(node.label) follows \(previous), not a Conv, Gemm or MatMul; only a BatchNormalization directly after a linear layer can be folded into it (move it there, or fold it yourself before exporting)")
        }
        var parameters: [[Double]] = []
        for (input, role) in zip(1...4, ["scale", "B", "mean", "var"]) {
            let (s, v) = try floats(node, input: input)
            guard s == [layer.rows] else {
                throw ONNXImportError(.shapeMismatch, "\(node.label): \(role) has shape \(s) but the layer before it has \(layer.rows) \(layer.kind == .dense ? "outputs" : "channels")")
            }
            parameters.append(v)
        }
        let epsilon = Double(try node.float("epsilon") ?? 1e-5)
        if let bad = layer.foldBatchNormalization(gamma: parameters[0], beta: parameters[1], mean: parameters[2],
                                                  variance: parameters[3], epsilon: epsilon) {
            throw ONNXImportError(.badTensor, "\(node.label): var + epsilon = \(parameters[3][bad] + epsilon) at channel \(bad) is not positive; the running statistics are damaged")
        }
        layer.sources.append(node.label)
        layers[layers.count - 1] = .linear(layer)
    }

    // MARK: Pooling and shapes

    /// MaxPool as the layer set has it: 2×2 windows, stride 2, no padding (floor mode).
    private mutating func maxPool(_ node: ONNXNode) throws(ONNXImportError) {
        try node.checkAttributes(["auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"])
        guard shape.count == 3 else {
            throw ONNXImportError(.shapeMismatch, "\(node.label): its input has shape [N, \(Self.list(shape))]; MaxPool needs images [N, C, H, W]")
        }
        let kernel = try node.ints("kernel_shape") ?? []
        let strides = try node.ints("strides") ?? [1, 1]
        let pads = try node.ints("pads") ?? [0, 0, 0, 0]
        let dilations = try node.ints("dilations") ?? [1, 1]
        let autoPad = try node.string("auto_pad") ?? "NOTSET"
        let ceil = try node.int("ceil_mode") ?? 0
        let (h, w) = (shape[1], shape[2])
        guard kernel == [2, 2], strides == [2, 2], pads == [0, 0, 0, 0], dilations == [1, 1],
              autoPad == "NOTSET" || autoPad == "VALID" else {
            throw ONNXImportError(.unsupportedAttribute, """
                \(node.label): kernel [\(Self.list(kernel))], strides [\(Self.list(strides))], pads \
                [\(Self.list(pads))], dilations [\(Self.list(dilations))], auto_pad \(autoPad) is not \
                supported: the project's maxpool2 layer is a 2×2 window with stride 2 and no padding \
                (PyTorch: nn.MaxPool2d(2))
                """)
        }
        guard ceil == 0 || (h % 2 == 0 && w % 2 == 0) else {
            throw ONNXImportError(.unsupportedAttribute, "\(node.label): ceil_mode = 1 on \(h)×\(w) images keeps a partial window; the project's maxpool2 drops the odd row or column (ceil_mode = 0)")
        }
        guard h >= 2, w >= 2 else {
            throw ONNXImportError(.shapeMismatch, "\(node.label): its input has shape [N, \(Self.list(shape))]; 2×2 pooling needs height and width of at least 2")
        }
        layers.append(.maxpool2)
        shape = [shape[0], h / 2, w / 2]
    }

    /// Flatten(axis = 1): [N, C, H, W] → [N, C·H·W]; a no-op on rows that are already flat.
    /// Returns whether a fold into the previous linear layer stays possible (a no-op keeps it).
    private mutating func flatten(_ node: ONNXNode) throws(ONNXImportError) -> Bool {
        try node.checkAttributes(["axis"])
        let rank = shape.count + 1
        var axis = Int(try node.int("axis") ?? 1)
        if axis < 0 { axis += rank }
        guard axis == 1 else {
            throw ONNXImportError(.unsupportedAttribute, "\(node.label): axis = \(axis) on a \(rank)-D tensor; only Flatten(axis = 1), which keeps the batch dimension, can be imported")
        }
        return flattenSample()
    }

    /// Reshape to [batch, features] with a constant shape: [-1, F], [0, -1], [0, F], [N, -1] for
    /// a fixed batch N, …
    private mutating func reshape(_ node: ONNXNode, data: String) throws(ONNXImportError) -> Bool {
        try node.checkAttributes(["allowzero"])
        try requireData(node, data: data, at: 0)
        guard node.proto.input.count >= 2, let t = chain.constants[node.proto.input[1]] else {
            throw ONNXImportError(.notAChain, "\(node.label) has no constant target shape; export with torch.flatten(x, 1) or nn.Flatten()")
        }
        let target = try ONNXTensorDecoding.int64s(t, owner: node.label, maxCount: ONNXTensorDecoding.maximumRank)
        let features = shape.reduce(1, *)
        let allowZero = try node.int("allowzero") ?? 0 != 0
        var batchOK = false, featuresOK = false
        if target.count == 2 {
            let (a, b) = (target[0], target[1])
            batchOK = (a == 0 && !allowZero) || (a == -1 && b == Int64(features))
                || (chain.fixedBatch.map { Int64($0) == a } ?? false)
            featuresOK = b == Int64(features) || (b == -1 && a != -1)
        }
        guard batchOK, featuresOK else {
            throw ONNXImportError(.unsupportedAttribute, "\(node.label) reshapes [N, \(Self.list(shape))] to [\(Self.list(target))]; only a reshape to [N, \(features)] (e.g. [-1, \(features)] or [0, -1]) can be imported — in PyTorch use torch.flatten(x, 1) or nn.Flatten()")
        }
        return flattenSample()
    }

    private mutating func flattenSample() -> Bool {
        guard shape.count > 1 else { return linearIsOpen }
        layers.append(.flatten)
        shape = [shape.reduce(1, *)]
        return false
    }

    /// Dropout at inference passes its input through; a constant training_mode must be false.
    private mutating func dropout(_ node: ONNXNode, data: String) throws(ONNXImportError) {
        try node.checkAttributes(["is_test", "ratio", "seed"])
        try requireData(node, data: data, at: 0)
        if node.proto.input.count > 2, !node.proto.input[2].isEmpty {
            let t = chain.constants[node.proto.input[2]]
            let off = t.map { $0.rawData.allSatisfy { $0 == 0 } && $0.int32Data.allSatisfy { $0 == 0 } } ?? false
            guard off else {
                throw ONNXImportError(.unsupportedAttribute, "\(node.label) may run in training mode; export the model in eval mode (model.eval() before torch.onnx.export)")
            }
        }
    }

    /// A final Softmax over the logits, or Sigmoid over a single logit: the manifest's head.
    private mutating func head(_ node: ONNXNode, isLast: Bool) throws(ONNXImportError) {
        try node.checkAttributes(node.opType == "Softmax" ? ["axis"] : [])
        guard isLast, shape.count == 1 else {
            throw ONNXImportError(.unsupportedOperator, "\(node.label): \(node.opType) is supported only as the last node, over flat logits [N, classes] (the classification head); the project's layers have no \(node.opType) inside a network")
        }
        if node.opType == "Softmax" {
            let axis = try node.int("axis") ?? (opset < 13 ? 1 : -1)
            guard axis == 1 || axis == -1 else {
                throw ONNXImportError(.unsupportedAttribute, "\(node.label): axis = \(axis); the head must be a softmax over the classes (axis 1 or -1)")
            }
            layers.append(.softmax)
        } else {
            guard shape == [1] else {
                throw ONNXImportError(.unsupportedOperator, "\(node.label): Sigmoid over \(shape[0]) outputs; a sigmoid head takes exactly one logit (use Softmax for several classes)")
            }
            layers.append(.sigmoid)
        }
    }

    // MARK: Helpers

    /// The node reads the activations at input `position` (not, say, as MatMul's right operand).
    private func requireData(_ node: ONNXNode, data: String, at position: Int) throws(ONNXImportError) {
        guard node.proto.input.count > position, node.proto.input[position] == data else {
            throw ONNXImportError(.unsupportedOperator, "\(node.label) uses the activations '\(data)' as input \(node.proto.input.firstIndex(of: data) ?? -1), not as input \(position); only the usual operand order (activations first) can be imported")
        }
    }

    private func flatInput(_ node: ONNXNode) throws(ONNXImportError) -> Int {
        guard shape.count == 1 else {
            throw ONNXImportError(.shapeMismatch, "\(node.label): its input has shape [N, \(Self.list(shape))]; \(node.opType) needs flat rows [N, features] — add Flatten before it (torch.flatten(x, 1))")
        }
        return shape[0]
    }

    /// A float32 constant input of `node`, counted against the parameter bound.
    private mutating func floats(_ node: ONNXNode, input: Int) throws(ONNXImportError) -> ([Int], [Double]) {
        guard node.proto.input.count > input, let t = chain.constants[node.proto.input[input]] else {
            throw ONNXImportError(.notONNX, "\(node.label) lacks input \(input), which must be a constant; the graph is malformed — export it again")
        }
        let count = try ONNXTensorDecoding.elementCount(t, owner: node.label)
        guard count <= maxParameters - parameters else {
            throw ONNXImportError(.tooLarge, "the model has more than \(maxParameters) float32 parameters (at \(node.label)); the importer's bound is ONNXImportOptions.maxParameterElements")
        }
        parameters += count
        return try ONNXTensorDecoding.floats(t, owner: node.label)
    }

    enum BiasLayout { case dense, channels }

    /// A bias of `rows` values from a constant that broadcasts per output: [rows] or [1, rows]
    /// after a dense layer, [rows, 1, 1] or [1, rows, 1, 1] after a convolution, or one value.
    static func broadcastBias(_ values: [Double], shape: [Int], rows: Int, layout: BiasLayout,
                              node: ONNXNode) throws(ONNXImportError) -> [Double] {
        if values.count == 1 && shape.allSatisfy({ $0 == 1 }) { return [Double](repeating: values[0], count: rows) }
        let accepted: [[Int]] = switch layout {
        case .dense: [[rows], [1, rows]]
        case .channels: [[rows, 1, 1], [1, rows, 1, 1]]
        }
        guard accepted.contains(shape) else {
            let shapes = accepted.map { "[\(list($0))]" }.joined(separator: " or ")
            throw ONNXImportError(.shapeMismatch, "\(node.label): the constant has shape [\(list(shape))]; a bias for \(rows) \(layout == .dense ? "outputs" : "channels") must be \(shapes) (or a single value)")
        }
        return values
    }

    static func transposed(_ m: [Double], rows: Int, columns: Int) -> [Double] {
        var t = [Double](repeating: 0, count: m.count)
        for r in 0..<rows {
            for c in 0..<columns { t[c * rows + r] = m[r * columns + c] }
        }
        return t
    }

    static func list<T: BinaryInteger>(_ values: [T], _ separator: String = ", ") -> String {
        values.map { "\($0)" }.joined(separator: separator)
    }
}
