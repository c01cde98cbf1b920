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
        if let operands, operands.resolution != r || operands.stages.count != network.plan.stages.count {
            throw RefinementError(.invalidResolution, "operands of resolution \(operands.resolution) used at \(r)")
        }
        let operands = operands ?? network.operands(atResolution: r)
        var out: [ExactTensor] = []
        out.reserveCapacity(inputs.count)
        for start in stride(from: 0, to: inputs.count, by: Self.sliceSize) {
            out += evaluateSlice(inputs[start..<min(start + Self.sliceSize, inputs.count)], operands: operands)
        }
        return out
    }

    /// Samples evaluated together. A layer's output is 16 bytes per element (a 16-channel
    /// 28×28 convolution: 200 KB per sample), and every pass between products runs at memory
    /// speed once a batch leaves the cache: 16 samples took half the time of 1 000 for the
    /// VGG (`srbench exact-inference --slice-size`), while the int8 products still see
    /// thousands of rows.
    static let sliceSize = 16

    private func evaluateSlice(_ inputs: ArraySlice<QuantizedTensor>, operands: ResolutionOperands) -> [ExactTensor] {
        let plan = network.plan
        var h = network.inputBatch(Array(inputs), resolution: operands.resolution).applying(plan.inputActivations)
        for (index, stage) in plan.stages.enumerated() {
            h = stage.activated(h, operands: operands.stages[index], policy: network.productPolicy)
        }
        return (0..<inputs.count).map(h.sample)
    }

    /// Splits the samples by the network's input partition, then evaluates them at resolution r.
    public func evaluate(_ samples: [Tensor], resolution r: Int) throws -> [ExactTensor] {
        let inputs = try samples.enumerated().map { i, s in try network.quantize(input: s, name: "sample \(i)") }
        return try evaluate(inputs, resolution: r)
    }
}
