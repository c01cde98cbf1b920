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

    /// units[sample, row, …] ← units << productShift + bias[row], then (optionally) ReLU and
    /// rounding to the grid 2^gridShift, in one pass; `rows` rows of equal length per sample.
    /// Shifts are below 128 (the plan proved every value fits Int128), so masking shifts are exact.
    mutating func addBias(_ bias: [Int128], rows: Int, productShift: Int, relu: Bool = false, gridShift: Int? = nil) {
        precondition(bias.count == rows && size % rows == 0 && (0..<128).contains(productShift),
                     "bias of \(bias.count) rows for a batch of shape \(shape)")
        let perRow = size / rows, count = self.count, shift = productShift
        let g = gridShift ?? 0
        precondition((0..<128).contains(g), "grid shift \(g) outside 0…127")
        let half: Int128 = g == 0 ? 0 : Int128(1) &<< (g - 1)
        // Sample by sample and row by row: no division per element (it cost more than the int8
        // product of a small convolution). One specialised loop per combination, so the inner
        // loop has no branches but ReLU's.
        units.withUnsafeMutableBufferPointer { u in
            func run(_ step: (Int128) -> Int128) {
                var i = 0
                for _ in 0..<count {
                    for o in 0..<rows {
                        let b = bias[o]
                        for _ in 0..<perRow {
                            u[i] = step((u[i] &<< shift) &+ b)
                            i += 1
                        }
                    }
                }
            }
            switch (relu, gridShift != nil) {
            case (false, false): run { $0 }
            case (true, false): run { max($0, 0) }
            case (false, true): run { ($0 &+ half) &>> g }
            case (true, true): run { (max($0, 0) &+ half) &>> g }
            }
        }
        if gridShift != nil { exponent += g }
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
