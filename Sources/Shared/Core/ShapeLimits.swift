// Size limits shared by jobs on the wire (WireLimits) and by model manifests: one definition in
// the core, so that neither the protocol nor the neural target needs the other for them.

public enum ShapeLimits {
    /// Rows, columns or vectors of a job; each dimension of a model's input.
    public static let maxDimension = 1 << 24
    /// Elements of a job's result or task block; elements of a model's activations.
    public static let maxElements = 1 << 27
    /// Chunks per operand; resolutions of a model.
    public static let maxChunks = 32
}
