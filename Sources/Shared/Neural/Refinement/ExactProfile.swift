// Direct evaluation with a stopwatch on every linear layer and phase, for
// `srbench exact-inference`: shows where the time of exact inference goes.
import SRCore

/// The time one linear layer took, split by phase, summed over the batches profiled.
package struct ExactLayerProfile: Sendable {
    /// e.g. "conv 16→32 28×28" or "dense 784→256".
    package let name: String
    /// The product paths taken (one entry per product and batch, deduplicated).
    package var paths: [String] = []
    package var weights = Duration.zero, split = Duration.zero, patches = Duration.zero
    package var product = Duration.zero, reorder = Duration.zero
    /// Bias, ReLU, grid, pooling and flatten after the product (on the digit path bias, ReLU
    /// and grid run inside the product, as its epilogue, and are counted there).
    package var activations = Duration.zero

    package var total: Duration { weights + split + patches + product + reorder + activations }
}

extension DirectEvaluator {
    /// `evaluate(inputs, resolution: operands.resolution, operands:)` with each stage's phases
    /// timed and added into `profile` (one entry per linear layer; empty: created here).
    /// Sliced as `evaluate` slices (`sliceSize` samples at a time).
    package func profile(_ inputs: [QuantizedTensor], operands: ResolutionOperands,
                         into profile: inout [ExactLayerProfile]) -> [ExactTensor] {
        var out: [ExactTensor] = []
        for start in stride(from: 0, to: inputs.count, by: Self.sliceSize) {
            out += profileSlice(Array(inputs[start..<min(start + Self.sliceSize, inputs.count)]),
                                operands: operands, into: &profile)
        }
        return out
    }

    private func profileSlice(_ inputs: [QuantizedTensor], operands: ResolutionOperands,
                              into profile: inout [ExactLayerProfile]) -> [ExactTensor] {
        let plan = network.plan
        if profile.isEmpty { profile = plan.stages.map { ExactLayerProfile(name: Self.describe($0)) } }
        var h = network.inputBatch(inputs, resolution: operands.resolution).applying(plan.inputActivations)
        let clock = ContinuousClock()
        for (index, stage) in plan.stages.enumerated() {
            let times = ExactPhaseTimes()
            let start = clock.now
            h = stage.activated(h, operands: operands.stages[index], policy: network.productPolicy, times: times)
            // Unfused epilogues count as activations; everything timed elsewhere is not.
            profile[index].activations += clock.now - start - times.total + times.epilogue
            profile[index].weights += times.weights
            profile[index].split += times.split
            profile[index].patches += times.patches
            profile[index].product += times.product
            profile[index].reorder += times.reorder
            for p in times.paths where !profile[index].paths.contains(p) { profile[index].paths.append(p) }
        }
        return (0..<inputs.count).map(h.sample)
    }

    private static func describe(_ stage: ExactStage) -> String {
        switch stage.kind {
        case .dense(let i, let o): "dense \(i)→\(o)"
        case .conv3x3(let c, let o, let h, let w): "conv \(c)→\(o) \(h)×\(w)"
        }
    }
}
