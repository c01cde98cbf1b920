// Raw little-endian arrays: the bodies of tasks, partials and outputs.

/// Every supported host is little-endian (x86-64, arm64), so arrays of fixed-width numbers are
/// copied in bulk; `assertLittleEndian` keeps that assumption checked.
enum LittleEndian {
    static let hostIsLittleEndian = 1.littleEndian == 1

    /// The array's bytes as they are in memory (little-endian on every supported host).
    static func raw<T: BitwiseCopyable>(_ v: [T]) -> [UInt8] {
        precondition(hostIsLittleEndian, "wire arrays are little-endian; this host is not")
        return v.withUnsafeBytes { Array($0) }
    }

    /// `count` values of T from little-endian bytes (unaligned source is fine).
    static func values<T: BitwiseCopyable>(_ b: ArraySlice<UInt8>, as: T.Type) -> [T] {
        precondition(hostIsLittleEndian, "wire arrays are little-endian; this host is not")
        let count = b.count / MemoryLayout<T>.stride
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            b.withUnsafeBytes { src in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: src[0..<(count * MemoryLayout<T>.stride)]))
            }
            initialized = count
        }
    }

    static func bytes(_ v: [Int32]) -> [UInt8] { raw(v) }
    static func bytes(_ v: [UInt32]) -> [UInt8] { raw(v) }
    static func bytes(_ v: [Int64]) -> [UInt8] { raw(v) }
    static func bytes(_ v: [Double]) -> [UInt8] { raw(v) }
    static func int32s(_ b: ArraySlice<UInt8>) -> [Int32] { values(b, as: Int32.self) }
    static func uint32s(_ b: ArraySlice<UInt8>) -> [UInt32] { values(b, as: UInt32.self) }
    static func int64s(_ b: ArraySlice<UInt8>) -> [Int64] { values(b, as: Int64.self) }
    static func doubles(_ b: ArraySlice<UInt8>) -> [Double] { values(b, as: Double.self) }
}

extension LittleEndian {
    /// Integers stored in `width` bytes each (1, 2, 4 or 8), two's complement. The caller has
    /// checked that every value fits (`width(forMagnitude:)`).
    static func bytes(_ v: [Int64], width: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: v.count * width)
        out.withUnsafeMutableBytes { raw in
            switch width {
            case 1: for (i, x) in v.enumerated() { raw.storeBytes(of: Int8(truncatingIfNeeded: x), toByteOffset: i, as: Int8.self) }
            case 2: for (i, x) in v.enumerated() { raw.storeBytes(of: Int16(truncatingIfNeeded: x).littleEndian, toByteOffset: 2 * i, as: Int16.self) }
            case 4: for (i, x) in v.enumerated() { raw.storeBytes(of: Int32(truncatingIfNeeded: x).littleEndian, toByteOffset: 4 * i, as: Int32.self) }
            default: for (i, x) in v.enumerated() { raw.storeBytes(of: x.littleEndian, toByteOffset: 8 * i, as: Int64.self) }
            }
        }
        return out
    }

    /// The inverse of `bytes(_:width:)`; `b.count` must be a multiple of `width`.
    static func integers(_ b: ArraySlice<UInt8>, width: Int) -> [Int64] {
        b.withUnsafeBytes { raw in
            let n = raw.count / width
            switch width {
            case 1: return (0..<n).map { Int64(raw.load(fromByteOffset: $0, as: Int8.self)) }
            case 2: return (0..<n).map { Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
            case 4: return (0..<n).map { Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
            default: return (0..<n).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            }
        }
    }

    /// The narrowest of 1, 2, 4, 8 bytes that holds every integer of magnitude ≤ `m`.
    static func width(forMagnitude m: UInt64) -> Int {
        m <= UInt64(Int8.max) ? 1 : m <= UInt64(Int16.max) ? 2 : m <= UInt64(Int32.max) ? 4 : 8
    }

    static func bytes(_ v: [Float]) -> [UInt8] { raw(v) }
    static func floats(_ b: ArraySlice<UInt8>) -> [Float] { values(b, as: Float.self) }
}
