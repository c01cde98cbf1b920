// Raw little-endian arrays: the bodies of tasks, partials and outputs.

enum LittleEndian {
    static func bytes(_ v: [Int32]) -> [UInt8] {
        var out = [UInt8](); out.reserveCapacity(v.count * 4)
        for x in v { withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }
    static func bytes(_ v: [UInt32]) -> [UInt8] {
        var out = [UInt8](); out.reserveCapacity(v.count * 4)
        for x in v { withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }
    static func bytes(_ v: [Int64]) -> [UInt8] {
        var out = [UInt8](); out.reserveCapacity(v.count * 8)
        for x in v { withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }
    static func bytes(_ v: [Double]) -> [UInt8] {
        var out = [UInt8](); out.reserveCapacity(v.count * 8)
        for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }
    static func int32s(_ b: ArraySlice<UInt8>) -> [Int32] {
        b.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        }
    }
    static func uint32s(_ b: ArraySlice<UInt8>) -> [UInt32] {
        b.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
        }
    }
    static func int64s(_ b: ArraySlice<UInt8>) -> [Int64] {
        b.withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
    }
    static func doubles(_ b: ArraySlice<UInt8>) -> [Double] {
        b.withUnsafeBytes { raw in
            (0..<(raw.count / 8)).map {
                Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))
            }
        }
    }
}
