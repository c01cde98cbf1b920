// The exact incremental upgrade of METHOD.md §5 in pre-activation form: per sample only the
// pre-activations z are kept; upgrade r adds what chunk r of every operand changes, nothing more.
import SRCore

/// Refines samples one resolution at a time, each sample on its own schedule: the early-exit
/// engine upgrades only the samples still in the gray zone and freezes the rest.
///
/// Upgrade r of a linear layer with accumulated weights A = W^(r−1), increments dA = dW_r,
/// db = db_r, accumulated input h and input increment dh:
///
///     Δz = lin(dh; A, bias 0) + lin(h + dh; dA, bias db)     (= (A+dA)(h+dh) + b^(r) − A·h − b^(r−1))
///     next dh = g(z + Δz) − g(z)                              (g = ReLU, grid, pool, flatten)
///     z += Δz
///
/// g is applied to the pre-activation, so a neuron switching off→on contributes z + Δz, not
/// Δz: the reference code's post-activation form ReLU(post + Δz) misses exactly that and
/// drifts. h and h + dh are g of the stored z before and after, so only z is stored; the
/// weights are shared by all samples and come from the `QuantizedNetwork`.
///
/// Exactness: every term is an integer in a fixed unit per layer; |lin(dh; A)| ≤ 2·B and
/// |lin(h + dh; dA) + db| ≤ 2·B for the layer's bound B < 2^125 (`NetworkPlan`), so no sum
/// exceeds 2^127. The result equals `DirectEvaluator` at the same resolution bit for bit.
public struct IncrementalEvaluator: Sendable {
    public let network: QuantizedNetwork

    /// What one sample carries between upgrades.
    struct SampleState: Sendable {
        let input: QuantizedTensor
        var resolution: Int
        /// z of every stage (C order), in the stage's unit; empty once frozen.
        var z: [[Int128]]
        /// The logits kept when the sample was frozen.
        var frozenLogits: ExactTensor?
    }

    private var states: [SampleState]

    /// Starts every sample at resolution 0 (all operands zero, so every z is 0).
    public init(network: QuantizedNetwork, inputs: [QuantizedTensor]) throws(RefinementError) {
        for (i, x) in inputs.enumerated() where x.shape != network.manifest.input || x.partition != network.inputPartition {
            throw RefinementError(.shapeMismatch,
                "sample \(i) has shape \(x.shape) and partition \(x.partition); the network takes \(network.manifest.input) split by \(network.inputPartition)")
        }
        self.network = network
        let zeros = network.plan.stages.map { [Int128](repeating: 0, count: $0.outputShape.reduce(1, *)) }
        states = inputs.map { SampleState(input: $0, resolution: 0, z: zeros, frozenLogits: nil) }
    }

    /// Splits the samples by the network's input partition and starts them at resolution 0.
    public init(network: QuantizedNetwork, samples: [Tensor]) throws {
        let inputs = try samples.enumerated().map { i, s in try network.quantize(input: s, name: "sample \(i)") }
        try self.init(network: network, inputs: inputs)
    }

    public var sampleCount: Int { states.count }

    /// How many upgrades `sample` has had (0…R).
    public func resolution(of sample: Int) -> Int { states[sample].resolution }

    public func isFrozen(_ sample: Int) -> Bool { states[sample].frozenLogits != nil }

    /// Bytes of refinement state one active sample holds besides its input: its z's.
    public var stateBytesPerSample: Int {
        network.plan.stages.reduce(0) { $0 + $1.outputShape.reduce(1, *) } * MemoryLayout<Int128>.stride
    }

    /// The sample's exact logits at its current resolution. O(size of the last layer).
    public func logits(of sample: Int) -> ExactTensor {
        let s = states[sample]
        if let kept = s.frozenLogits { return kept }
        let last = network.plan.stages[network.plan.stages.count - 1]
        let z = ExactBatch(count: 1, shape: last.outputShape, exponent: last.outputExponent, units: s.z[s.z.count - 1])
        return z.applying(last.activations).sample(0)
    }

    /// Stops refining `sample`: keeps its logits, releases its state. Later upgrades of it throw.
    public mutating func freeze(_ sample: Int) {
        guard states[sample].frozenLogits == nil else { return }
        states[sample].frozenLogits = logits(of: sample)
        states[sample].z = []
    }

    /// Applies the next upgrade to each listed sample (samples may be at different resolutions)
    /// and returns their new logits in the same order. Samples not listed are not touched.
    /// Cost per group of samples at the same resolution: two exact products per linear layer.
    public mutating func upgrade(_ samples: [Int]) throws(RefinementError) -> [ExactTensor] {
        var seen = Set<Int>()
        for i in samples {
            guard states.indices.contains(i) else {
                throw RefinementError(.invalidSample, "sample \(i) does not exist; there are \(states.count)")
            }
            guard seen.insert(i).inserted else {
                throw RefinementError(.invalidSample, "sample \(i) is listed twice in one upgrade")
            }
            guard states[i].frozenLogits == nil else {
                throw RefinementError(.invalidSample, "sample \(i) is frozen at resolution \(states[i].resolution); it is not upgraded any more")
            }
            guard states[i].resolution < network.resolutions else {
                throw RefinementError(.invalidResolution,
                    "sample \(i) is already at the final resolution \(network.resolutions)")
            }
        }
        var result: [Int: ExactTensor] = [:]
        let groups = Dictionary(grouping: samples) { states[$0].resolution }
        for (from, group) in groups.sorted(by: { $0.key < $1.key }) {
            let logits = upgrade(group, to: from + 1)
            for (i, l) in zip(group, logits) { result[i] = l }
        }
        return samples.map { result[$0]! }
    }

    /// Upgrade r for samples all at resolution r − 1.
    private mutating func upgrade(_ group: [Int], to r: Int) -> [ExactTensor] {
        let plan = network.plan
        let inputs = group.map { states[$0].input }
        var hOld = network.inputBatch(inputs, resolution: r - 1).applying(plan.inputActivations)
        var hNew = network.inputBatch(inputs, resolution: r).applying(plan.inputActivations)
        for (s, stage) in plan.stages.enumerated() {
            let dh = hNew - hOld
            let a = network.operands(stage, resolution: r - 1, increment: false)
            let d = network.operands(stage, resolution: r, increment: true)
            // Δz = lin(dh; A, 0) + lin(h + dh; dA, db); raw sums share the unit 2^{e_h + e_W}.
            var raw = stage.rawProduct(dh, operands: a, policy: network.productPolicy)
            let fresh = stage.rawProduct(hNew, operands: d, policy: network.productPolicy)
            for k in raw.indices { raw[k] += fresh[k] }
            let dz = stage.finish(raw, count: group.count, bias: d.bias)
            var zOld = ExactBatch.zeros(count: 0, shape: stage.outputShape, exponent: stage.outputExponent)
            zOld.count = group.count
            zOld.units.reserveCapacity(dz.units.count)
            for i in group { zOld.units.append(contentsOf: states[i].z[s]) }
            var zNew = zOld
            for k in zNew.units.indices { zNew.units[k] += dz.units[k] }
            let size = zNew.size
            for (j, i) in group.enumerated() { states[i].z[s] = Array(zNew.units[(j * size)..<((j + 1) * size)]) }
            // The next layer's input before and after: g of the pre-activation, not of h + Δz.
            hOld = zOld.applying(stage.activations)
            hNew = zNew.applying(stage.activations)
        }
        for i in group { states[i].resolution = r }
        return (0..<group.count).map(hNew.sample)
    }
}
