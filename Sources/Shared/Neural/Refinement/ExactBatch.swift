// A batch of samples' exact activations in one fixed-point unit, and the steps between linear
// layers (ReLU, max pooling, flatten, grid rounding) applied to it without rounding error.
import SRKernels

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
        out.apply(steps[...])
        return out
    }

    /// g applied to every sample, in place (no copy of the units). O(count · size).
    mutating func apply(_ steps: ArraySlice<ExactActivation>) {
        for step in steps {
            switch step {
            case .relu:
                units.withUnsafeMutableBufferPointer { u in
                    for i in u.indices where u[i] < 0 { u[i] = 0 }
                }
            case .maxpool2:
                units = ExactArithmetic.maxpool2(units, count: count, channels: shape[0], height: shape[1], width: shape[2])
                shape = [shape[0], shape[1] / 2, shape[2] / 2]
            case .flatten:
                shape = [size]
            case .grid(let shift):
                ExactArithmetic.roundToGrid(&units, shift: shift)
                exponent += shift
            }
        }
    }

    /// The epilogue (bias, then ReLU and grid rounding if it says so) on every sample, whose
    /// elements are `epilogue.bias.count` rows of equal length; the exponent follows the grid.
    mutating func apply(_ epilogue: Epilogue) {
        let count = self.count, perRow = size / max(epilogue.bias.count, 1)
        precondition(perRow * epilogue.bias.count == size, "bias of \(epilogue.bias.count) rows for a batch of shape \(shape)")
        units.withUnsafeMutableBufferPointer { epilogue.apply(to: $0, count: count, perRow: perRow) }
        exponent += epilogue.gridShift ?? 0
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
