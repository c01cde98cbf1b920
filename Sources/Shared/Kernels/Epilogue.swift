// What follows a layer's product, element by element: the bias, ReLU and rounding to the
// activation grid. The digit GEMM applies it while a value is still in registers; the other
// paths call `apply` on their output.

/// z = (p << shift) + bias[row], then max(z, 0) if `relu`, then (with `gridShift` g) the
/// nearest multiple of 2^g, ties up, in those multiples: ⌊(z + 2^{g−1}) / 2^g⌋. Exact on
/// Int128 when the caller has proved every z fits (shifts are masking shifts below 128).
package struct Epilogue: Sendable {
    package var shift: Int
    /// One per output row (a dense layer's output, a convolution's output channel).
    package var bias: [Int128]
    package var relu: Bool
    package var gridShift: Int?

    package init(shift: Int, bias: [Int128], relu: Bool = false, gridShift: Int? = nil) {
        precondition((0..<128).contains(shift) && (1..<128).contains(gridShift ?? 1), "epilogue shifts outside 0…127")
        self.shift = shift
        self.bias = bias
        self.relu = relu
        self.gridShift = gridShift
    }

    /// Applies it to `count` samples of `bias.count` rows of `perRow` elements each, in place.
    /// O(count · rows · perRow).
    package func apply(to u: UnsafeMutableBufferPointer<Int128>, count: Int, perRow: Int) {
        let rows = bias.count, shift = self.shift, g = gridShift ?? 0
        precondition(u.count == count * rows * perRow, "epilogue: \(u.count) elements for \(count) × \(rows) × \(perRow)")
        let half: Int128 = g == 0 ? 0 : Int128(1) &<< (g - 1)
        // Sample by sample and row by row: no division per element (it cost more than the int8
        // product of a small convolution). One specialised loop per combination, so the inner
        // loop has no branches but ReLU's.
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
}
