// SHA-256 (FIPS 180-4) for content-addressing operands: OpenSSL's libcrypto behind a small
// Swift value, so verifying a stored operand on a consumer's first load costs milliseconds,
// not a second (a portable Swift version hashed ~100 MB/s here; libcrypto uses the SHA
// extensions of the CPU).
private import CSRCrypto

/// Incremental SHA-256. `update` any number of times, then `finalize`.
public struct SHA256: ~Copyable {
    private let context: UnsafeMutableRawPointer

    public init() {
        guard let c = csrcrypto_sha256_new() else { fatalError("OpenSSL could not allocate a SHA-256 context (out of memory)") }
        context = c
    }

    deinit { csrcrypto_sha256_free(context) }

    /// The hex digest of `bytes` in one call.
    public static func hexDigest(_ bytes: [UInt8]) -> String {
        var h = SHA256()
        h.update(bytes)
        return h.finalizeHex()
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return }
            precondition(csrcrypto_sha256_update(context, base, raw.count) == 1, "OpenSSL SHA-256 update failed")
        }
    }

    /// The 32-byte digest. The hash can go on being updated afterwards (a copy is finalised).
    public mutating func finalize() -> [UInt8] {
        guard let copy = csrcrypto_sha256_copy(context) else { fatalError("OpenSSL could not copy a SHA-256 context") }
        defer { csrcrypto_sha256_free(copy) }
        var out = [UInt8](repeating: 0, count: 32)
        precondition(out.withUnsafeMutableBufferPointer { csrcrypto_sha256_final(copy, $0.baseAddress) } == 1,
                     "OpenSSL SHA-256 final failed")
        return out
    }

    public mutating func finalizeHex() -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in finalize() {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
