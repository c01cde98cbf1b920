// Resolution r evaluated from scratch: the network on W^(r), b^(r), X^(r), exactly. Needs no
// state between resolutions, so any worker can compute any sample at any resolution.
import SRCore

/// Evaluates a quantized network at a resolution directly: one product per linear layer.
public struct DirectEvaluator: Sendable {
    public let network: QuantizedNetwork

    public init(network: QuantizedNetwork) {
        self.network = network
    }

    /// The exact logits of every sample at resolution r (0…R; 0 gives zeros).
    /// Cost: one exact product per linear layer over the whole batch, O(r·|W|) to assemble W^(r).
    public func evaluate(_ inputs: [QuantizedTensor], resolution r: Int) throws(RefinementError) -> [ExactTensor] {
        try evaluate(inputs, resolution: r, operands: nil)
    }

    /// As above, with the stages' operands at r assembled ahead (`QuantizedNetwork.operands(atResolution:)`):
    /// a worker evaluating many batches at one resolution assembles W^(r) once, not per batch.
    public func evaluate(_ inputs: [QuantizedTensor], resolution r: Int,
                         operands: ResolutionOperands?) throws(RefinementError) -> [ExactTensor] {
        guard (0...network.resolutions).contains(r) else {
            throw RefinementError(.invalidResolution, "resolution \(r) is outside 0…\(network.resolutions)")
        }
        for (i, x) in inputs.enumerated() where x.shape != network.manifest.input || x.partition != network.inputPartition {
            throw RefinementError(.shapeMismatch,
                "sample \(i) has shape \(x.shape) and partition \(x.partition); the network takes \(network.manifest.input) split by \(network.inputPartition)")
        }
        let plan = network.plan
        var h = network.inputBatch(inputs, resolution: r).applying(plan.inputActivations)
        if let operands, operands.resolution != r || operands.stages.count != plan.stages.count {
            throw RefinementError(.invalidResolution, "operands of resolution \(operands.resolution) used at \(r)")
        }
        for (index, stage) in plan.stages.enumerated() {
            let (w, b) = operands?.stages[index] ?? network.operands(stage, resolution: r, increment: false)
            let raw = stage.rawProduct(h, weights: w, policy: network.productPolicy)
            h = stage.finish(raw, count: inputs.count, bias: b).applying(stage.activations)
        }
        return (0..<inputs.count).map(h.sample)
    }

    /// Splits the samples by the network's input partition, then evaluates them at resolution r.
    public func evaluate(_ samples: [Tensor], resolution r: Int) throws -> [ExactTensor] {
        let inputs = try samples.enumerated().map { i, s in try network.quantize(input: s, name: "sample \(i)") }
        return try evaluate(inputs, resolution: r)
    }
}
