// Exact arithmetic modulo the Mersenne prime p = 2^61 − 1: chunk products are integers far
// below p/2 in magnitude, so they survive a round trip through the field unchanged. Used by
// the Freivalds checksums (PartialVerifier) and by the mini-job code's decoder (MiniJobCode).

/// Arithmetic modulo the Mersenne prime 2^61 − 1. Residues are UInt64 in [0, p).
/// `@usableFromInline` and `@inlinable` throughout: the verifier (SRAggregation) and the code
/// (SRCoding) call these in their innermost loops, across a module boundary, and the compiler
/// inlines a `package` type's members into another module only when the type is marked so.
@usableFromInline package enum Mod61 {
    // Computed, not a stored `let`: another module would reach a stored global through its
    // lazy-initialisation accessor in every call.
    @inlinable package static var p: UInt64 { (1 << 61) - 1 }

    @inlinable @inline(__always)
    static func reduce(_ x: UInt64) -> UInt64 {
        let r = (x & p) + (x >> 61)
        return r >= p ? r - p : r
    }

    /// A signed integer mod p.
    @inlinable
    package static func of(_ v: Int64) -> UInt64 {
        v >= 0 ? reduce(UInt64(v)) : (p - reduce(v.magnitude)) % p
    }

    /// The integer in (−p/2, p/2) congruent to `r`: the exact value of anything known to lie
    /// in that range.
    @inlinable
    package static func signed(_ r: UInt64) -> Int64 {
        r > p / 2 ? -Int64(p - r) : Int64(r)
    }

    @inlinable
    package static func add(_ a: UInt64, _ b: UInt64) -> UInt64 { reduce(a + b) }

    @inlinable
    package static func sub(_ a: UInt64, _ b: UInt64) -> UInt64 { a >= b ? a - b : a + (p - b) }

    @inlinable
    package static func mul(_ a: UInt64, _ b: UInt64) -> UInt64 {
        // a, b < 2^61: a·b = high·2^64 + low < 2^122, and x ≡ (x & p) + (x >> 61) (mod p).
        let (high, low) = a.multipliedFullWidth(by: b)
        return reduce((low & p) + (high << 3 | low >> 61))
    }

    /// a^(p−2) = a⁻¹ for a ≢ 0 (Fermat); nil for 0.
    package static func inverse(_ a: UInt64) -> UInt64? {
        guard a != 0 else { return nil }
        var result: UInt64 = 1, base = a, e = p - 2
        while e > 0 {
            if e & 1 == 1 { result = mul(result, base) }
            base = mul(base, base)
            e >>= 1
        }
        return result
    }
}
