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
        let n = rows * stride
        // All planes in one buffer, written in one pass over the Int128s (they were re-read per
        // plane before). Most activations fit 64 bits after the shift; Int128 shifts cost more.
        var flat = [UInt8](repeating: 0, count: planeCount * n)
        var any = [UInt8](repeating: 0, count: planeCount)
        let fits64 = planeCount * digitBits <= 64
        flat.withUnsafeMutableBufferPointer { out in
            any.withUnsafeMutableBufferPointer { any in
                for r in 0..<rows {
                    let src = v.baseAddress! + r * inner, row = out.baseAddress! + r * stride
                    if fits64 {
                        for c in 0..<inner {
                            var x = UInt64(truncatingIfNeeded: (src[c] &>> rightShift) &+ offset)
                            for p in 0..<planeCount {
                                let d = UInt8(truncatingIfNeeded: x & mask)
                                row[p * n + c] = d
                                any[p] |= d
                                x &>>= UInt64(digitBits)
                            }
                        }
                    } else {
                        for c in 0..<inner {
                            let x = (src[c] &>> rightShift) &+ offset
                            for p in 0..<planeCount {
                                let d = UInt8(truncatingIfNeeded: UInt64(truncatingIfNeeded: x &>> (p * digitBits)) & mask)
                                row[p * n + c] = d
                                any[p] |= d
                            }
                        }
                    }
                }
            }
        }
        let used = (0..<planeCount).filter { any[$0] != 0 || (alsoHeld >> ($0 * digitBits)) & Int128(mask) != 0 }
        self.planes = used.map { Array(flat[($0 * n)..<(($0 + 1) * n)]) }
        self.shifts = used.map { $0 * digitBits }
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
        let pw = width + 2, ph = height + 2
        var out: [[UInt8]] = []
        // Per image, the channels are first copied into a frame of padding (C · (H+2)·(W+2)
        // bytes, in L1), so that every patch is nine unconditional loads and the patch matrix
        // is written row after row.
        var framed = [UInt8](repeating: 0, count: channels * ph * pw)
        for (p, source) in planes.enumerated() {
            let pad = UInt8(truncatingIfNeeded: UInt64(truncatingIfNeeded: padding >> shifts[p]) & (UInt64(1) << digitBits - 1))
            var patches = [UInt8](repeating: 0, count: count * plane * stride)
            source.withUnsafeBufferPointer { src in
                patches.withUnsafeMutableBufferPointer { dst in
                    framed.withUnsafeMutableBufferPointer { frame in
                        for s in 0..<count {
                            frame.update(repeating: pad)
                            for c in 0..<channels {
                                let image = src.baseAddress! + (s * channels + c) * self.stride
                                for y in 0..<height {
                                    let to = frame.baseAddress! + (c * ph + y + 1) * pw + 1
                                    to.update(from: image + y * width, count: width)
                                }
                            }
                            for y in 0..<height {
                                for x in 0..<width {
                                    let row = dst.baseAddress! + (s * plane + y * width + x) * stride
                                    for c in 0..<channels {
                                        let f = frame.baseAddress! + (c * ph + y) * pw + x, to = row + c * 9
                                        to[0] = f[0]; to[1] = f[1]; to[2] = f[2]
                                        to[3] = f[pw]; to[4] = f[pw + 1]; to[5] = f[pw + 2]
                                        to[6] = f[2 * pw]; to[7] = f[2 * pw + 1]; to[8] = f[2 * pw + 2]
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
