// The JSON manifest of a network: its layers, the tensors they use, and how every tensor is
// partitioned for successive refinement. Weights live beside it in a safetensors file.
import SRCore

/// One layer of a sequential network. Tensor names refer to the safetensors file.
public enum LayerSpec: Sendable, Equatable, Codable {
    /// y = W·x + b, W of shape [out, in], b of shape [out].
    case dense(weights: String, bias: String)
    /// 3×3 convolution, stride 1, zero padding 1: W [outC, inC, 3, 3], b [outC]; input [C, H, W].
    case conv2d(weights: String, bias: String)
    /// 2×2 max pooling, stride 2, floor mode: [C, H, W] → [C, ⌊H/2⌋, ⌊W/2⌋] (H, W ≥ 2); an odd
    /// last row or column is dropped, as in PyTorch's `MaxPool2d(2)` and ONNX's `ceil_mode = 0`.
    case maxpool2
    case relu
    /// [C, H, W] → [C·H·W] (C order).
    case flatten
    /// Classification head over the last dense layer's outputs (logits are what refinement tracks).
    case softmax
    /// Binary head: one logit.
    case sigmoid
}

/// How a network is refined: R resolutions; each upgrade adds the next chunk of every operand.
public struct ModelManifest: Sendable, Equatable, Codable {
    public static let formatName = "sr-model"
    public var format: String = ModelManifest.formatName
    public var version: Int = 1
    /// Shape of one input sample, e.g. [784] or [1, 28, 28].
    public var input: [Int]
    public var layers: [LayerSpec]
    /// R: number of resolutions (upgrades).
    public var resolutions: Int
    /// Magnitude bits added per upgrade for every tensor without an explicit partition.
    public var bitsPerUpgrade: Int
    /// Explicit partitions by tensor name (and "input"); others are fitted to the tensor's range.
    public var partitions: [String: [Int]]
    /// Optional activation grid exponent H: pre-activations are rounded to multiples of 2^H.
    public var activationGrid: Int?
    /// Class names (optional), index = label.
    public var classes: [String]?
    /// Early-exit rules calibrated for this network (`srproduce model calibrate`), in their
    /// text form (`ExitRule(parsing:)`); the first is the one `srproduce infer` uses by default.
    public var exitRules: [String]?

    public init(input: [Int], layers: [LayerSpec], resolutions: Int, bitsPerUpgrade: Int,
                partitions: [String: [Int]] = [:], activationGrid: Int? = nil, classes: [String]? = nil) {
        self.input = input
        self.layers = layers
        self.resolutions = resolutions
        self.bitsPerUpgrade = bitsPerUpgrade
        self.partitions = partitions
        self.activationGrid = activationGrid
        self.classes = classes
    }
}

extension ModelManifest {
    /// Largest R: every tensor is split into R chunks, as operands of mat-vec jobs are.
    public static let maxResolutions = ShapeLimits.maxChunks
    /// Elements of one sample and of any activation (input, conv output, flatten).
    public static let maxActivationElements = ShapeLimits.maxElements

    /// Checks what a manifest states on its own, before any tensor is read: resolutions, bit
    /// widths, explicit partitions, the activation grid, the input shape — with overflow-safe
    /// arithmetic, so a crafted manifest is refused with a message, never a crash.
    public func validate(source: String = "<memory>") throws(ModelError) {
        func bad(_ what: String) -> ModelError { ModelError(.badManifest, "\(source): \(what)") }
        guard (1...Self.maxResolutions).contains(resolutions) else {
            throw bad("resolutions is \(resolutions); it must be 1…\(Self.maxResolutions) (the number of refinement steps, e.g. 3)")
        }
        guard (1...PartitionVector.maximumChunkBits).contains(bitsPerUpgrade) else {
            throw bad("bitsPerUpgrade is \(bitsPerUpgrade); it must be 1…\(PartitionVector.maximumChunkBits) (magnitude bits each resolution adds, e.g. 4)")
        }
        guard resolutions * bitsPerUpgrade <= QuantizedTensor.maximumTotalBits else {
            throw bad("resolutions × bitsPerUpgrade = \(resolutions * bitsPerUpgrade) bits; at most \(QuantizedTensor.maximumTotalBits) are supported — use fewer resolutions or fewer bits per upgrade")
        }
        for name in partitions.keys.sorted() {
            let exponents = partitions[name]!
            let p: PartitionVector
            do { p = try PartitionVector(exponents) } catch { throw bad("partitions[\"\(name)\"]: \(error)") }
            guard p.chunkCount == resolutions else {
                throw bad("partitions[\"\(name)\"] = \(exponents) has \(p.chunkCount) chunks, but resolutions is \(resolutions); give it \(resolutions + 1) strictly decreasing exponents")
            }
            guard p.totalBits <= QuantizedTensor.maximumTotalBits else {
                throw bad("partitions[\"\(name)\"] = \(exponents) spans \(p.totalBits) bits; at most \(QuantizedTensor.maximumTotalBits)")
            }
        }
        if let h = activationGrid, !PartitionVector.exponentRange.contains(h) {
            throw bad("activationGrid is \(h); it must be in \(PartitionVector.exponentRange)")
        }
        guard (1...3).contains(input.count), input.allSatisfy({ (1...ShapeLimits.maxDimension).contains($0) }) else {
            throw bad("input shape \(input) must have 1–3 dimensions, each 1…\(ShapeLimits.maxDimension), e.g. [784] or [1, 28, 28]")
        }
        _ = try Self.elements(input, source: source)
        guard !layers.isEmpty, layers.count <= 1000 else { throw bad("the manifest must have 1…1000 layers (it has \(layers.count))") }
        if let classes, classes.count > 100_000 { throw bad("\(classes.count) class names; at most 100 000") }
        for (i, text) in (exitRules ?? []).enumerated() {
            do { _ = try ExitRule(parsing: text) } catch { throw bad("exitRules[\(i)] '\(text.prefix(80))': \(error)") }
        }
    }

    /// Elements of a shape, or a `badManifest` error when the product overflows or exceeds
    /// `maxActivationElements`.
    static func elements(_ shape: [Int], source: String) throws(ModelError) -> Int {
        var n = 1
        for d in shape {
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow, p <= maxActivationElements else {
                throw ModelError(.shapeMismatch, "\(source): shape \(shape) has more than \(maxActivationElements) elements")
            }
            n = p
        }
        return n
    }
}
