// A non-negative integer matrix as unsigned digit planes, the operand the int8 digit GEMM
// streams: one byte per element and plane instead of sixteen for an Int128.

/// rows × inner non-negative integers X = Σ_p 2^{shifts[p]} · plane_p, each plane rows × stride
/// bytes (stride = inner rounded up to 4, padding zero). Planes that are all zero are left out.
package struct UnsignedDigitPlanes: Sendable {
    package let rows: Int
    package let inner: Int
    package let stride: Int
    /// Bits per digit: every digit is below 2^digitBits.
    package let digitBits: Int
    package var planes: [[UInt8]]
    package var shifts: [Int]

    /// The digits of (v[i] >> rightShift) + offset, which the caller guarantees to be in
    /// [0, 2^{planeCount · digitBits}). A plane is kept if any digit of it, or of `alsoHeld`
    /// (a value that joins the data later, such as convolution padding), is non-zero.
    /// O(rows · inner · planeCount).
    package init(_ v: UnsafeBufferPointer<Int128>, rows: Int, inner: Int, rightShift: Int, offset: Int128,
                 digitBits: Int, planeCount: Int, alsoHeld: Int128 = 0) {
        precondition(v.count == rows * inner, "digit planes: shape disagrees with the data")
        self.rows = rows
        self.inner = inner
        self.stride = (inner + 3) & ~3
        self.digitBits = digitBits
        let stride = self.stride, mask = UInt64(1) << digitBits - 1
        var planes = [[UInt8]](repeating: [UInt8](repeating: 0, count: rows * stride), count: planeCount)
        var used = [Bool](repeating: false, count: planeCount)
        // Most activations fit 64 bits after the shift; Int128 shifts cost several times more.
        let fits64 = planeCount * digitBits <= 64
        for p in 0..<planeCount {
            var any: UInt8 = 0
            planes[p].withUnsafeMutableBufferPointer { dst in
                for r in 0..<rows {
                    let src = v.baseAddress! + r * inner, out = dst.baseAddress! + r * stride
                    if fits64 {
                        let s = UInt64(p * digitBits)
                        for c in 0..<inner {
                            let x = UInt64(truncatingIfNeeded: (src[c] >> rightShift) + offset)
                            let d = UInt8(truncatingIfNeeded: (x >> s) & mask)
                            out[c] = d
                            any |= d
                        }
                    } else {
                        for c in 0..<inner {
                            let x = (src[c] >> rightShift) + offset
                            let d = UInt8(truncatingIfNeeded: UInt64(truncatingIfNeeded: x >> (p * digitBits)) & mask)
                            out[c] = d
                            any |= d
                        }
                    }
                }
            }
            used[p] = any != 0 || (alsoHeld >> (p * digitBits)) & Int128(mask) != 0
        }
        self.planes = (0..<planeCount).filter { used[$0] }.map { planes[$0] }
        self.shifts = (0..<planeCount).filter { used[$0] }.map { $0 * digitBits }
    }

    private init(rows: Int, inner: Int, digitBits: Int, planes: [[UInt8]], shifts: [Int]) {
        self.rows = rows
        self.inner = inner
        self.stride = (inner + 3) & ~3
        self.digitBits = digitBits
        self.planes = planes
        self.shifts = shifts
    }

    /// The 3×3, padding-1 patches of every plane, where the planes hold `count` images
    /// [C, H, W] (rows = count · C, inner = H · W): (count·H·W) × (C·9) per plane, patch
    /// elements in (c, ky, kx) order like conv weights [outC, C, 3, 3]. Padding takes the
    /// digits of `padding` (the offset that made the data non-negative: padding is zero
    /// before the offset). O(count·C·H·W·9) per plane.
    package func patches3x3(count: Int, channels: Int, height: Int, width: Int, padding: Int128) -> UnsignedDigitPlanes {
        precondition(rows == count * channels && inner == height * width, "patches: shape disagrees with the planes")
        let k = channels * 9, stride = (k + 3) & ~3, plane = height * width
        var out: [[UInt8]] = []
        for (p, source) in planes.enumerated() {
            let pad = UInt8(truncatingIfNeeded: UInt64(truncatingIfNeeded: padding >> shifts[p]) & (UInt64(1) << digitBits - 1))
            var patches = [UInt8](repeating: 0, count: count * plane * stride)
            source.withUnsafeBufferPointer { src in
                patches.withUnsafeMutableBufferPointer { dst in
                    for s in 0..<count {
                        for c in 0..<channels {
                            let image = src.baseAddress! + (s * channels + c) * self.stride
                            for y in 0..<height {
                                for x in 0..<width {
                                    let row = dst.baseAddress! + (s * plane + y * width + x) * stride + c * 9
                                    for ky in 0..<3 {
                                        let iy = y + ky - 1
                                        let inside = iy >= 0 && iy < height
                                        for kx in 0..<3 {
                                            let ix = x + kx - 1
                                            row[ky * 3 + kx] = inside && ix >= 0 && ix < width ? image[iy * width + ix] : pad
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            out.append(patches)
        }
        return UnsignedDigitPlanes(rows: count * plane, inner: k, digitBits: digitBits, planes: out, shifts: shifts)
    }
}
