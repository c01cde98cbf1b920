// Integer weights as signed base-256 (or base-128) digit planes, packed in the layout the digit
// GEMM streams (16 outputs × 4 inner bytes per 64-byte load).
internal import CSRKernels

/// outputs × inner integers W = Σ_p 2^{shifts[p]} · plane_p with balanced digits in
/// [−2^(b−1), 2^(b−1)) for b = `digitBits` (8, or 7 for the AVX2 kernel; a digit plane is a
/// plain int8 matrix, so no bias is needed on this side). All-zero planes are left out.
/// Small weights (|w| < 2^(b−1), typical at low resolutions) are one plane.
package struct SignedDigitWeights: Sendable {
    package let outputs: Int
    package let inner: Int
    /// b: every digit lies in [−2^(b−1), 2^(b−1)).
    package let digitBits: Int
    package var packed: [[Int8]]
    package var shifts: [Int]
    /// Σ_i W[o, i] per output, exactly: removes the offset that made V non-negative.
    package let rowSums: [Int128]

    /// The digits of w[i] >> rightShift (an arithmetic shift of bits the caller knows are
    /// zero). O(outputs · inner · planes).
    package init(_ w: [Int64], outputs: Int, inner: Int, rightShift: Int, digitBits: Int = 8) {
        precondition(w.count == outputs * inner, "digit weights: shape disagrees with the data")
        precondition((2...8).contains(digitBits), "weight digits have 2…8 bits")
        self.outputs = outputs
        self.inner = inner
        self.digitBits = digitBits
        let base = Int64(1) << digitBits, half = base / 2
        var rest = w.map { $0 >> rightShift }
        var sums = [Int128](repeating: 0, count: outputs)
        for o in 0..<outputs {
            for i in 0..<inner { sums[o] += Int128(rest[o * inner + i]) }
        }
        rowSums = sums
        var packed: [[Int8]] = [], shifts: [Int] = []
        var shift = 0
        while rest.contains(where: { $0 != 0 }) {
            // Balanced digit: d ≡ x (mod 2^b) in [−2^(b−1), 2^(b−1)); x − d is a multiple of
            // 2^b, and |x| shrinks by b bits per plane, so at most ⌈64/b⌉ planes for any Int64.
            var digits = [Int8](repeating: 0, count: rest.count)
            var any = false
            for i in rest.indices {
                let d = ((rest[i] & (base - 1)) ^ half) - half
                digits[i] = Int8(d)
                any = any || d != 0
                rest[i] = (rest[i] - d) >> digitBits
            }
            if any {
                var plane = [Int8](repeating: 0, count: srk_digit_packed_size(outputs, inner))
                plane.withUnsafeMutableBufferPointer { p in srk_digit_pack(digits, outputs, inner, p.baseAddress!) }
                packed.append(plane)
                shifts.append(shift)
            }
            shift += digitBits
        }
        self.packed = packed
        self.shifts = shifts
    }
}
