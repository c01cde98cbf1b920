// The JSON manifest of a network: its layers, the tensors they use, and how every tensor is
// partitioned for successive refinement. Weights live beside it in a safetensors file.

/// One layer of a sequential network. Tensor names refer to the safetensors file.
public enum LayerSpec: Sendable, Equatable, Codable {
    /// y = W·x + b, W of shape [out, in], b of shape [out].
    case dense(weights: String, bias: String)
    /// 3×3 convolution, stride 1, zero padding 1: W [outC, inC, 3, 3], b [outC]; input [C, H, W].
    case conv2d(weights: String, bias: String)
    /// 2×2 max pooling, stride 2 (H and W must be even).
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
