// An exact dyadic tensor: integers times one power of two. The form every value of a network
// at resolution r takes, so that incremental and direct results compare bit for bit.
import SRCore

/// Values `units[i] · 2^exponent`, C order over `shape`. Equality is exact equality.
public struct ExactTensor: Sendable, Equatable {
    /// Dimensions of one sample's tensor, outermost first (e.g. [10] for logits).
    public var shape: [Int]
    /// The integers, C order; count = product of `shape`.
    public var units: [Int128]
    /// Every element is a multiple of 2^exponent.
    public var exponent: Int

    public init(shape: [Int], units: [Int128], exponent: Int) {
        precondition(shape.reduce(1, *) == units.count,
                     "exact tensor of shape \(shape) needs \(shape.reduce(1, *)) units, got \(units.count)")
        self.shape = shape
        self.units = units
        self.exponent = exponent
    }

    /// The values rounded to the nearest Double (exact while |units| < 2^53).
    public var values: [Double] {
        let e = exponent
        return units.map { ResolutionAccumulator.double($0).scaled(byPowerOfTwo: e) }
    }
}
