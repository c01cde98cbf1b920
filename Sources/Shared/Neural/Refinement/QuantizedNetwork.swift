// A network ready for successive refinement: every weight and bias tensor split into R chunks
// by its own partition vector (METHOD.md §5), the input's partition, and the compiled plan.
import SRCore

/// The network of a manifest with every parameter tensor and the input split into R chunks.
/// Upgrade r (1…R) adds chunk r of every operand at once; resolution r is the network evaluated
/// on W^(r), b^(r), X^(r) — exactly, as integers times powers of two.
public struct QuantizedNetwork: Sendable {
    public let manifest: ModelManifest
    /// Every tensor the layers use, split; key = tensor name.
    public let tensors: [String: QuantizedTensor]
    /// The partition every input sample is split by.
    public let inputPartition: PartitionVector
    let plan: NetworkPlan
    /// How the evaluators compute exact products; results are identical under every policy.
    public var productPolicy: ExactProductPolicy = .automatic

    /// Splits the tensors the manifest's layers use. Each gets `manifest.partitions[name]` or,
    /// without one, `bitsPerUpgrade`-bit chunks below the smallest p_0 above its max |value|.
    /// The input partition is `inputPartition`, else `manifest.partitions["input"]`; fit one
    /// to data with `fittedInputPartition(manifest:samples:)`.
    /// Throws `RefinementError` (missing tensors, shapes, partitions, an Int128 overflow risk)
    /// or `LayeringError` (a value outside an explicit partition's range, a bad partition).
    public init(manifest: ModelManifest, tensors: [String: Tensor],
                inputPartition: PartitionVector? = nil) throws {
        let r = manifest.resolutions
        guard r >= 1 else {
            throw RefinementError(.invalidResolution, "the manifest has \(r) resolutions; it needs at least 1")
        }
        var split: [String: QuantizedTensor] = [:]
        for (index, layer) in manifest.layers.enumerated() {
            let names: [String]
            switch layer {
            case .dense(let w, let b), .conv2d(let w, let b): names = [w, b]
            default: names = []
            }
            for name in names where split[name] == nil {
                guard let t = tensors[name] else {
                    throw RefinementError(.missingTensor,
                        "layer \(index) uses tensor \"\(name)\", which is not among the \(tensors.count) tensors supplied")
                }
                let p = try Self.partition(for: name, manifest: manifest,
                                           maxMagnitude: t.values.reduce(0) { max($0, Double(abs($1))) })
                split[name] = try QuantizedTensor(t, partition: p, name: name)
            }
        }
        let input: PartitionVector
        if let given = inputPartition {
            input = given
        } else if manifest.partitions["input"] != nil {
            input = try Self.partition(for: "input", manifest: manifest, maxMagnitude: 0)
        } else {
            throw RefinementError(.invalidPartition,
                "no partition for the input: add partitions[\"input\"] to the manifest or pass one, e.g. QuantizedNetwork.fittedInputPartition(manifest:samples:)")
        }
        guard input.chunkCount == r else {
            throw RefinementError(.invalidPartition,
                "the input partition \(input) has \(input.chunkCount) chunks, but the manifest has \(r) resolutions")
        }
        guard input.totalBits <= QuantizedTensor.maximumTotalBits else {
            throw RefinementError(.invalidPartition,
                "the input partition \(input) has \(input.totalBits) bits; at most \(QuantizedTensor.maximumTotalBits) are supported")
        }
        self.manifest = manifest
        self.tensors = split
        self.inputPartition = input
        self.plan = try NetworkPlan(manifest: manifest, tensors: split, inputPartition: input)
    }

    /// R chunks of `bitsPerUpgrade` bits below the smallest p_0 above every |value| of `samples`.
    public static func fittedInputPartition(manifest: ModelManifest, samples: [Tensor]) throws -> PartitionVector {
        let m = samples.reduce(0.0) { acc, t in t.values.reduce(acc) { max($0, Double(abs($1))) } }
        return try PartitionVector.fitted(maxMagnitude: m, chunks: manifest.resolutions, bits: manifest.bitsPerUpgrade)
    }

    /// The input partition a job uses for images whose largest |value| is `maxMagnitude`: the
    /// manifest's `partitions["input"]` (what calibration fixed), else one fitted to the images.
    public static func inputPartition(manifest: ModelManifest, maxMagnitude: Double) throws -> PartitionVector {
        try partition(for: "input", manifest: manifest, maxMagnitude: maxMagnitude)
    }

    /// The explicit partition of `name` (checked to have R chunks) or one fitted to the data.
    static func partition(for name: String, manifest: ModelManifest, maxMagnitude: Double) throws -> PartitionVector {
        if let exponents = manifest.partitions[name] {
            let p = try PartitionVector(exponents)
            guard p.chunkCount == manifest.resolutions else {
                throw RefinementError(.invalidPartition,
                    "partition \(exponents) of \"\(name)\" has \(p.chunkCount) chunks, but the manifest has \(manifest.resolutions) resolutions; give it \(manifest.resolutions + 1) exponents")
            }
            return p
        }
        return try PartitionVector.fitted(maxMagnitude: maxMagnitude, chunks: manifest.resolutions,
                                          bits: manifest.bitsPerUpgrade)
    }

    /// R, the number of resolutions.
    public var resolutions: Int { manifest.resolutions }

    /// Shape of one sample's logits.
    public var outputShape: [Int] { plan.outputShape }

    /// Logits at every resolution are integers times 2^outputExponent.
    public var outputExponent: Int { plan.outputExponent }

    /// Splits one input sample by the input partition (throws `LayeringError` for a value
    /// outside its range, `RefinementError` for a wrong shape).
    public func quantize(input sample: Tensor, name: String = "input") throws -> QuantizedTensor {
        guard sample.shape == manifest.input else {
            throw RefinementError(.shapeMismatch, "\(name) has shape \(sample.shape); the network takes \(manifest.input)")
        }
        return try QuantizedTensor(sample, partition: inputPartition, name: name)
    }

    /// Rows `indices` of `samples` (one flattened sample per row), each split by the input
    /// partition; an error names the row. O(count · size · R).
    public func quantize(rows samples: Matrix<Double>, _ indices: some Sequence<Int>) throws -> [QuantizedTensor] {
        let size = samples.columns
        guard size == manifest.input.reduce(1, *) else {
            throw RefinementError(.shapeMismatch, "the samples have \(size) values each; the network takes \(manifest.input)")
        }
        return try indices.map { i in
            try QuantizedTensor(values: Array(samples.elements[(i * size)..<((i + 1) * size)]), shape: manifest.input,
                                partition: inputPartition, name: "sample \(i)")
        }
    }

    /// X^(r) of `inputs` as a batch in units of 2^{p_n}. O(count · size · r).
    func inputBatch(_ inputs: [QuantizedTensor], resolution r: Int) -> ExactBatch {
        var units: [Int128] = []
        units.reserveCapacity(inputs.count * plan.inputShape.reduce(1, *))
        for x in inputs { units.append(contentsOf: x.units(atResolution: r).lazy.map { Int128($0) }) }
        return ExactBatch(count: inputs.count, shape: plan.inputShape, exponent: plan.inputExponent, units: units)
    }

    /// W^(r) (or dW_r with `increment`) of a stage in the weights' unit, and b^(r) (or db_r)
    /// shifted into z's unit; with `prepare`, W's digit planes too (see `StageOperands`).
    func operands(_ stage: ExactStage, resolution r: Int, increment: Bool, prepare: Bool = false) -> StageOperands {
        let w = tensors[stage.weights]!, b = tensors[stage.bias]!
        let wu = increment ? w.increment(atResolution: r) : w.units(atResolution: r)
        let bu = increment ? b.increment(atResolution: r) : b.units(atResolution: r)
        return StageOperands(weights: wu, bias: bu.map { Int128($0) << stage.biasShift }, outputs: stage.rows,
                             prepare: prepare)
    }

    /// Every stage's W^(r) and b^(r), with W's digit planes, assembled once for many direct
    /// evaluations at r.
    public func operands(atResolution r: Int) -> ResolutionOperands {
        ResolutionOperands(resolution: r, stages: plan.stages.map { operands($0, resolution: r, increment: false, prepare: true) })
    }
}

/// A network's weights and biases at one resolution, in the units `DirectEvaluator` uses.
public struct ResolutionOperands: Sendable {
    public let resolution: Int
    let stages: [StageOperands]

    /// Bytes held (for cache accounting).
    public var bytes: Int { stages.reduce(0) { $0 + $1.bytes } }
}
