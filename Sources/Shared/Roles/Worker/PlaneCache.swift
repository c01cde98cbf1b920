// Consumers cache immutable operands (prepared chunk planes of registered matrices) by digest
// and partition, bounded in bytes, least recently used evicted first.
import SRCore
import SRKernels
import SRNeural
import Synchronization

/// What a consumer keeps per registered matrix and partition.
public enum CachedOperand: Sendable {
    case layered([PreparedPlane])
    case float32(Matrix<Float>)
    /// A registered network split for refinement, with the input partition of its jobs.
    case network(QuantizedNetwork)
    /// A registered matrix as stored (inference images: one sample per row).
    case matrix(Matrix<Double>)
    /// A network's weights and biases assembled at one resolution.
    case resolution(ResolutionOperands)

    var bytes: Int {
        switch self {
        case .network(let n): n.tensors.values.reduce(0) { $0 + $1.count * $1.resolutions * 4 }
        case .matrix(let m): m.elements.count * 8
        case .resolution(let o): o.bytes
        // The plane itself plus the float copy a BLAS path keeps (none for int8 / integer paths).
        case .layered(let planes): planes.reduce(0) { $0 + $1.plane.byteCount + ($1.path == .float32BLAS || $1.path == .float64BLAS ? $1.bytesPerPass : 0) }
        case .float32(let m): m.elements.count * 4
        }
    }
}

/// An operand the cache could not keep beside another: `evicted` left to make room for `needed`,
/// or (`evicted == nil`) `needed` alone is larger than the whole cache and was not kept at all.
/// Either way the consumer prepares it again next time — seconds for a large matrix.
public struct CacheEviction: Sendable, Equatable {
    public var evicted: String?
    public var evictedBytes: Int
    public var needed: String
    public var neededBytes: Int
    public var capacityBytes: Int
}

public final class PlaneCache: Sendable {
    private struct State {
        var entries: [String: (value: CachedOperand, used: UInt64)] = [:]
        var bytes = 0
        var clock: UInt64 = 0
        var hits = 0, misses = 0
    }
    private let state = Mutex(State())
    public let capacityBytes: Int
    private let onEviction: @Sendable (CacheEviction) -> Void

    /// `onEviction` is called (outside the lock) for every entry evicted and every value too
    /// large to keep: a pool that evicts on every job is silently slow, so the worker logs it.
    public init(capacityBytes: Int, onEviction: @escaping @Sendable (CacheEviction) -> Void = { _ in }) {
        self.capacityBytes = capacityBytes
        self.onEviction = onEviction
    }

    /// The cached value for `key`, or `make()`'s result, cached (evicting the least recently
    /// used entries beyond the capacity; an entry larger than the capacity is not cached).
    public func value(for key: String, make: () throws -> CachedOperand) rethrows -> CachedOperand {
        if let hit = state.withLock({ s -> CachedOperand? in
            s.clock += 1
            guard let e = s.entries[key] else { s.misses += 1; return nil }
            s.entries[key] = (e.value, s.clock)
            s.hits += 1
            return e.value
        }) { return hit }
        let value = try make()
        let size = value.bytes
        let evictions = state.withLock { s -> [CacheEviction] in
            guard s.entries[key] == nil else { return [] }
            guard size <= capacityBytes else {
                return [CacheEviction(evicted: nil, evictedBytes: 0, needed: key, neededBytes: size, capacityBytes: capacityBytes)]
            }
            var out: [CacheEviction] = []
            while s.bytes + size > capacityBytes, let victim = s.entries.min(by: { $0.value.used < $1.value.used }) {
                let bytes = victim.value.value.bytes
                s.bytes -= bytes
                s.entries[victim.key] = nil
                out.append(CacheEviction(evicted: victim.key, evictedBytes: bytes, needed: key, neededBytes: size, capacityBytes: capacityBytes))
            }
            s.entries[key] = (value, s.clock)
            s.bytes += size
            return out
        }
        evictions.forEach(onEviction)
        return value
    }

    public var statistics: (hits: Int, misses: Int, bytes: Int) {
        state.withLock { ($0.hits, $0.misses, $0.bytes) }
    }
}
