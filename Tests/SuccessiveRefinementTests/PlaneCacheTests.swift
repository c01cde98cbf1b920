import Synchronization
import Testing
import SRCore
@testable import SRWorker

@Suite struct PlaneCacheTests {
    /// A cached float32 matrix of `count` elements: 4·count bytes.
    func operand(_ count: Int) -> CachedOperand {
        .float32(Matrix(rows: 1, columns: count, elements: [Float](repeating: 1, count: count)))
    }

    @Test func evictsTheLeastRecentlyUsedAndReportsEveryEviction() {
        let seen = Mutex<[CacheEviction]>([])
        let cache = PlaneCache(capacityBytes: 100) { e in seen.withLock { $0.append(e) } }
        var made = 0
        _ = cache.value(for: "a") { made += 1; return operand(10) }   // 40 B
        _ = cache.value(for: "b") { made += 1; return operand(10) }   // 80 B
        _ = cache.value(for: "a") { made += 1; return operand(10) }   // hit: a is now newer than b
        #expect(made == 2)
        #expect(seen.withLock { $0 }.isEmpty)
        _ = cache.value(for: "c") { made += 1; return operand(10) }   // 120 B > 100: b goes
        #expect(seen.withLock { $0 } == [CacheEviction(evicted: "b", evictedBytes: 40, needed: "c", neededBytes: 40, capacityBytes: 100)])
        _ = cache.value(for: "a") { made += 1; return operand(10) }
        #expect(made == 3)   // a survived
        #expect(cache.statistics.bytes == 80)
    }

    @Test func reportsAValueLargerThanTheCacheAndDoesNotKeepIt() {
        let seen = Mutex<[CacheEviction]>([])
        let cache = PlaneCache(capacityBytes: 100) { e in seen.withLock { $0.append(e) } }
        _ = cache.value(for: "small") { operand(5) }
        _ = cache.value(for: "huge") { operand(30) }   // 120 B
        #expect(seen.withLock { $0 } == [CacheEviction(evicted: nil, evictedBytes: 0, needed: "huge", neededBytes: 120, capacityBytes: 100)])
        #expect(cache.statistics.bytes == 20)   // the small one stays
    }
}
