// A batch of samples' exact activations in one fixed-point unit, and the steps between linear
// layers (ReLU, max pooling, flatten, grid rounding) applied to it without rounding error.

/// The steps g between two linear layers: h_next = g(z). Each is exact on integers.
enum ExactActivation: Sendable, Equatable {
    case relu
    case maxpool2
    case flatten
    /// The manifest's activation grid: round to the nearest multiple of 2^shift units.
    case grid(shift: Int)
}

/// `count` samples of shape `shape`, values units · 2^exponent, sample after sample.
struct ExactBatch: Sendable, Equatable {
    var count: Int
    var shape: [Int]
    var exponent: Int
    var units: [Int128]

    /// Elements per sample.
    var size: Int { shape.reduce(1, *) }

    static func zeros(count: Int, shape: [Int], exponent: Int) -> ExactBatch {
        ExactBatch(count: count, shape: shape, exponent: exponent,
                   units: [Int128](repeating: 0, count: count * shape.reduce(1, *)))
    }

    /// Sample i as a tensor.
    func sample(_ i: Int) -> ExactTensor {
        ExactTensor(shape: shape, units: Array(units[(i * size)..<((i + 1) * size)]), exponent: exponent)
    }

    /// g applied to every sample. O(count · size).
    func applying(_ steps: [ExactActivation]) -> ExactBatch {
        var out = self
        for step in steps {
            switch step {
            case .relu:
                for i in out.units.indices where out.units[i] < 0 { out.units[i] = 0 }
            case .maxpool2:
                out.units = ExactArithmetic.maxpool2(out.units, count: count, channels: out.shape[0],
                                                     height: out.shape[1], width: out.shape[2])
                out.shape = [out.shape[0], out.shape[1] / 2, out.shape[2] / 2]
            case .flatten:
                out.shape = [out.size]
            case .grid(let shift):
                ExactArithmetic.roundToGrid(&out.units, shift: shift)
                out.exponent += shift
            }
        }
        return out
    }

    /// Elementwise self − other (same count, shape and exponent).
    static func - (a: ExactBatch, b: ExactBatch) -> ExactBatch {
        precondition(a.count == b.count && a.shape == b.shape && a.exponent == b.exponent,
                     "exact batches differ in layout")
        var out = a
        for i in out.units.indices { out.units[i] -= b.units[i] }
        return out
    }
}
