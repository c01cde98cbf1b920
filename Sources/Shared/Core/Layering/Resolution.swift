// One refinement of a product: the running sum of layers 0…ℓ, with its error bound.

/// Resolution ℓ of R of a product Y = A·X: the exact sum of every mini-job in layers ≤ ℓ.
public struct Resolution: Sendable {
    /// ℓ, 0-based.
    public let index: Int
    /// R, the number of resolutions of the schedule.
    public let count: Int
    /// The exact running sum as integers: value = units · 2^unitExponent (row-major, rows × vectors).
    public let units: [Int128]
    public let unitExponent: Int
    /// `units · 2^unitExponent` rounded to the nearest Double.
    public let values: Matrix<Double>
    /// Elementwise bound on |A·X − values| for the real operands A, X.
    public let bound: Matrix<Double>

    /// True for the last resolution: equal to the fixed-point one-shot product Ã·X̃.
    public var isFinal: Bool { index == count - 1 }

    /// The largest elementwise bound.
    public var maxBound: Double { bound.elements.max() ?? 0 }
}
