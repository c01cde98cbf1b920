// The layer sequence compiled for exact evaluation: one stage per linear layer with its
// fixed-point exponents and shapes, and the proof (checked once) that nothing overflows Int128.
import SRCore
import SRKernels

/// One linear layer (dense or 3×3 conv) and the steps g that follow it up to the next one.
///
/// Fixed point: the stage input h is in units of 2^{e_h}, the weights in 2^{e_W}, the bias in
/// 2^{e_b} (each tensor's finest partition exponent, the same at every resolution). The product
/// W·h is exact in units 2^{e_h + e_W}; z uses e_z = min(e_h + e_W, e_b), so z = (W·h) <<
/// productShift + b << biasShift with both shifts ≥ 0 — aligning means shifting the coarser term.
struct ExactStage: Sendable {
    enum Kind: Sendable, Equatable {
        case dense(inputs: Int, outputs: Int)
        case conv3x3(inChannels: Int, outChannels: Int, height: Int, width: Int)
    }

    let layerIndex: Int
    let kind: Kind
    let weights: String
    let bias: String
    let inputShape: [Int]
    let inputExponent: Int
    let productShift: Int
    let biasShift: Int
    /// z: shape, exponent, and a bound on |z| valid at every resolution and for every input.
    let outputShape: [Int]
    let outputExponent: Int
    let outputBound: Int128
    /// g, and the shape, exponent and bound of g(z) (the next stage's input or the logits).
    var activations: [ExactActivation] = []
    var activatedShape: [Int] = []
    var activatedExponent: Int = 0
    var activatedBound: Int128 = 0

    /// Length of one weight row (one patch for conv).
    var inner: Int {
        switch kind {
        case .dense(let inputs, _): inputs
        case .conv3x3(let c, _, _, _): c * 9
        }
    }

    /// Weight rows = output channels.
    var rows: Int {
        switch kind {
        case .dense(_, let outputs): outputs
        case .conv3x3(_, let outC, _, _): outC
        }
    }

    /// Raw h·Wᵀ in units 2^{e_h + e_W}, laid out like z (per sample, C order over outputShape),
    /// or with `epilogue` that applied to it.
    func rawProduct(_ h: ExactBatch, operands: StageOperands, policy: ExactProductPolicy,
                    epilogue: Epilogue? = nil, times: ExactPhaseTimes? = nil) -> [Int128] {
        switch kind {
        case .dense(let inputs, let outputs):
            return ExactArithmetic.product(vectors: h.units, count: h.count, inner: inputs,
                                           weights: operands.weights, outputs: outputs, prepared: operands.digits,
                                           epilogue: epilogue, policy: policy, times: times)
        case .conv3x3(let c, let outC, let height, let width):
            return ExactArithmetic.convolution3x3(h.units, count: h.count, channels: c, height: height,
                                                  width: width, weights: operands.weights, outputs: outC,
                                                  prepared: operands.digits, epilogue: epilogue, policy: policy,
                                                  times: times)
        }
    }

    /// z = raw << productShift + bias (bias already in z's unit, one per row). O(count · size).
    func finish(_ raw: [Int128], count: Int, bias: [Int128]) -> ExactBatch {
        var z = ExactBatch(count: count, shape: outputShape, exponent: outputExponent, units: raw)
        z.apply(Epilogue(shift: productShift, bias: bias))
        return z
    }

    /// g(h·Wᵀ << productShift + bias): the product with the bias and g's leading ReLU and grid
    /// rounding as its epilogue (inside the digit GEMM, on values still in registers), then
    /// the rest of g in place. Every Int128 pass over a layer's output cost about as much as
    /// its int8 product.
    func activated(_ h: ExactBatch, operands: StageOperands, policy: ExactProductPolicy,
                   times: ExactPhaseTimes? = nil) -> ExactBatch {
        var rest = activations[...]
        let relu = rest.first == .relu
        if relu { rest = rest.dropFirst() }
        var grid: Int? = nil
        if case .grid(let shift)? = rest.first {
            grid = shift
            rest = rest.dropFirst()
        }
        let epilogue = Epilogue(shift: productShift, bias: operands.bias, relu: relu, gridShift: grid)
        let units = rawProduct(h, operands: operands, policy: policy, epilogue: epilogue, times: times)
        var z = ExactBatch(count: h.count, shape: outputShape, exponent: outputExponent + (grid ?? 0), units: units)
        z.apply(rest)
        return z
    }
}

/// The compiled network: steps g_0 on the input, then the stages.
struct NetworkPlan: Sendable {
    /// No |z| may exceed 2^125: an incremental upgrade sums terms up to 4·|z|max (see
    /// `IncrementalEvaluator`), which then stays below Int128's 2^127.
    static let maximumBoundBits = 125

    let inputShape: [Int]
    let inputExponent: Int
    var inputActivations: [ExactActivation] = []
    var stages: [ExactStage] = []

    var outputShape: [Int] { stages[stages.count - 1].activatedShape }
    var outputExponent: Int { stages[stages.count - 1].activatedExponent }

    /// Checks every layer against its tensors and proves the Int128 bound.
    ///
    /// Bit growth: all chunks of a value share its sign, so |W^(r)| ≤ |W^(R)| elementwise and
    /// |dW_r| ≤ |W^(R)|; likewise for b and X. Hence with |h| ≤ H (in units),
    /// |z_o| ≤ (Σ_i |W^(R)_{o,i}|·H) << productShift + |b^(R)_o| << biasShift =: B for every
    /// resolution and every input the input partition accepts (|x| < 2^{p_0}). ReLU, max pooling
    /// and flatten keep the bound; grid rounding divides it by 2^shift (plus one). Each layer
    /// adds roughly (weight bits + log2(fan-in) + e_{h}+e_W−e_z) bits, so without a grid an
    /// L-layer network needs about L·(b·R + log2 n) bits: the bound is what decides.
    init(manifest: ModelManifest, tensors: [String: QuantizedTensor],
         inputPartition: PartitionVector) throws(RefinementError) {
        inputShape = manifest.input
        inputExponent = inputPartition.finestExponent
        var shape = manifest.input
        var exponent = inputPartition.finestExponent
        var bound = (Int128(1) << inputPartition.totalBits) - 1
        var headAt: Int? = nil

        func close() {
            guard !stages.isEmpty else { return }
            stages[stages.count - 1].activatedShape = shape
            stages[stages.count - 1].activatedExponent = exponent
            stages[stages.count - 1].activatedBound = bound
        }
        func append(_ step: ExactActivation) {
            if stages.isEmpty { inputActivations.append(step) } else { stages[stages.count - 1].activations.append(step) }
        }

        for (index, layer) in manifest.layers.enumerated() {
            if let head = headAt {
                throw RefinementError(.unsupportedNetwork,
                    "layer \(index) (\(layer)) follows the output head at layer \(head); the head must come last")
            }
            switch layer {
            case .relu:
                append(.relu)
            case .flatten:
                shape = [shape.reduce(1, *)]
                append(.flatten)
            case .maxpool2:
                guard shape.count == 3, shape[1] >= 2, shape[2] >= 2 else {
                    throw RefinementError(.shapeMismatch,
                        "layer \(index) (maxpool2) needs an input [C, H, W] with H and W at least 2, got \(shape)")
                }
                shape = [shape[0], shape[1] / 2, shape[2] / 2]
                append(.maxpool2)
            case .softmax, .sigmoid:
                headAt = index
            case .dense(let w, let b), .conv2d(let w, let b):
                close()
                let wt = try Self.tensor(w, tensors, layer: index)
                let bt = try Self.tensor(b, tensors, layer: index)
                let kind = try Self.kind(of: layer, index: index, input: shape, weights: wt.shape, bias: bt.shape)
                let product = exponent + wt.unitExponent
                let e = min(product, bt.unitExponent)
                let zBound = try Self.bound(layer: index, weights: wt, bias: bt, inputBound: bound,
                                            productShift: product - e, biasShift: bt.unitExponent - e, exponent: e)
                let zShape: [Int]
                switch kind {
                case .dense(_, let outputs): zShape = [outputs]
                case .conv3x3(_, let outC, let h, let wd): zShape = [outC, h, wd]
                }
                stages.append(ExactStage(layerIndex: index, kind: kind, weights: w, bias: b,
                                         inputShape: shape, inputExponent: exponent,
                                         productShift: product - e, biasShift: bt.unitExponent - e,
                                         outputShape: zShape, outputExponent: e, outputBound: zBound))
                shape = zShape
                exponent = e
                bound = zBound
                // The grid rounds pre-activations, so it comes first in g; a grid at or below
                // the unit would change nothing.
                if let grid = manifest.activationGrid, grid > e {
                    let shift = grid - e
                    append(.grid(shift: shift))
                    exponent = grid
                    bound = (bound >> shift) + 1
                }
            }
        }
        guard !stages.isEmpty else {
            throw RefinementError(.unsupportedNetwork,
                "the network has no dense or conv2d layer; there is nothing to refine")
        }
        close()
    }

    private static func tensor(_ name: String, _ tensors: [String: QuantizedTensor],
                               layer: Int) throws(RefinementError) -> QuantizedTensor {
        guard let t = tensors[name] else {
            throw RefinementError(.missingTensor, "layer \(layer) uses tensor \"\(name)\", which was not supplied")
        }
        return t
    }

    private static func kind(of layer: LayerSpec, index: Int, input: [Int], weights: [Int],
                             bias: [Int]) throws(RefinementError) -> ExactStage.Kind {
        switch layer {
        case .dense:
            guard input.count == 1 else {
                throw RefinementError(.shapeMismatch,
                    "layer \(index) (dense) needs a vector input, got \(input); add a flatten layer before it")
            }
            guard weights.count == 2, weights[1] == input[0], bias == [weights[0]] else {
                throw RefinementError(.shapeMismatch,
                    "layer \(index) (dense) on input [\(input[0])] needs weights [out, \(input[0])] and bias [out], got \(weights) and \(bias)")
            }
            return .dense(inputs: input[0], outputs: weights[0])
        default:
            guard input.count == 3 else {
                throw RefinementError(.shapeMismatch, "layer \(index) (conv2d) needs an input [C, H, W], got \(input)")
            }
            guard weights.count == 4, weights[1] == input[0], weights[2] == 3, weights[3] == 3,
                  bias == [weights[0]] else {
                throw RefinementError(.shapeMismatch,
                    "layer \(index) (conv2d) on input \(input) needs weights [outC, \(input[0]), 3, 3] and bias [outC], got \(weights) and \(bias)")
            }
            return .conv3x3(inChannels: input[0], outChannels: weights[0], height: input[1], width: input[2])
        }
    }

    /// max_o (Σ_i |W_{o,i}|·H) << productShift + |b_o| << biasShift, with every step checked.
    private static func bound(layer: Int, weights: QuantizedTensor, bias: QuantizedTensor, inputBound: Int128,
                              productShift: Int, biasShift: Int, exponent: Int) throws(RefinementError) -> Int128 {
        let w = weights.units(atResolution: weights.resolutions)
        let b = bias.units(atResolution: bias.resolutions)
        let rows = b.count, inner = rows == 0 ? 0 : w.count / rows
        let limit = maximumBoundBits
        var worst: Int128 = 0
        for o in 0..<rows {
            var l1: Int128 = 0   // ≤ inner · 2^62: no overflow for any realistic fan-in
            for i in 0..<inner { l1 += Int128(w[o * inner + i].magnitude) }
            let (product, overflow) = l1.multipliedReportingOverflow(by: inputBound)
            let bo = Int128(b[o].magnitude)
            guard !overflow, ExactArithmetic.bits(product) + productShift <= limit,
                  ExactArithmetic.bits(bo) + biasShift <= limit else {
                throw overflowError(layer: layer, exponent: exponent)
            }
            let total = (product << productShift) + (bo << biasShift)
            guard ExactArithmetic.bits(total) <= limit else { throw overflowError(layer: layer, exponent: exponent) }
            worst = max(worst, total)
        }
        return worst
    }

    private static func overflowError(layer: Int, exponent: Int) -> RefinementError {
        RefinementError(.wouldOverflow,
            "layer \(layer): exact pre-activations in units of 2^\(exponent) could exceed 2^\(maximumBoundBits), beyond what Int128 holds with headroom for upgrades. Use fewer resolutions or fewer bits per upgrade, or set the manifest's activationGrid so that pre-activations are rounded to a coarser grid")
    }
}
