// What the ONNX importer is told: the bounds that keep a hostile file from costing more than a
// refusal, and the refinement settings (resolutions, bits, head, class names) of the new manifest.
import SRCore
import SRNeural

/// Settings of one import. The defaults suit the project's image classifiers.
public struct ONNXImportOptions: Sendable, Equatable {
    /// The classification head written as the manifest's last layer.
    public enum Head: String, Sendable, Equatable, CaseIterable {
        /// The graph's own (a final Softmax or Sigmoid); without one, softmax over two or more
        /// logits and no head over a single output.
        case auto
        case softmax
        case sigmoid
        case none
    }

    /// Largest file read, in bytes. Default 512 MiB (protobuf itself stops at 2 GiB; larger
    /// ONNX models keep their weights in external files, which are refused).
    public var maxFileBytes: Int
    /// Largest number of float32 parameters over all initializers the graph uses. Default
    /// `ShapeLimits.maxElements` (2^27, 512 MiB of weights).
    public var maxParameterElements: Int
    /// Largest number of nodes in the graph. Default 10 000.
    public var maxNodes: Int
    /// R of the manifest: resolutions at inference. Default 6.
    public var resolutions: Int
    /// Magnitude bits each resolution adds to every tensor. Default 2.
    public var bitsPerUpgrade: Int
    /// Default `.auto`.
    public var head: Head
    /// Class names, index = label; must have one name per output when given. Default none.
    public var classes: [String]?

    public init(maxFileBytes: Int = 1 << 29, maxParameterElements: Int = ShapeLimits.maxElements,
                maxNodes: Int = 10_000, resolutions: Int = 6, bitsPerUpgrade: Int = 2,
                head: Head = .auto, classes: [String]? = nil) {
        self.maxFileBytes = maxFileBytes
        self.maxParameterElements = maxParameterElements
        self.maxNodes = maxNodes
        self.resolutions = resolutions
        self.bitsPerUpgrade = bitsPerUpgrade
        self.head = head
        self.classes = classes
    }
}
