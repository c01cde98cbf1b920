// A dense float32 tensor, row-major (C order): weights, biases, images and activations.

public struct Tensor: Sendable, Equatable {
    /// Dimensions, outermost first (e.g. [out, in] for dense weights, [outC, inC, 3, 3] for conv,
    /// [C, H, W] for one image).
    public var shape: [Int]
    /// Elements in C order; count = product of `shape`.
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 } && shape.reduce(1, *) == values.count,
                     "tensor of shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
        self.shape = shape
        self.values = values
    }

    public init(shape: [Int], repeating value: Float = 0) {
        self.init(shape: shape, values: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    public var count: Int { values.count }
}
