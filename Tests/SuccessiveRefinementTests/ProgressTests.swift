// Progress notices: what the aggregator sends a watcher that asked (tasks taken per layer, at
// most every progressMs), how they travel, and the status line srproduce draws from them.
import Testing
@testable import SRAggregation
@testable import SRCore
@testable import SRProtocol
@testable import SRTransport

@Suite struct ProgressTests {
    func notices(_ actions: [JobAggregation.Action]) -> [ProgressMessage] {
        actions.compactMap { if case .progress(let p) = $0 { p } else { nil } }
    }

    @Test func noticesCountTasksPerLayerAtMostEveryInterval() throws {
        // 10 rows in blocks of 4: K = 3 tasks per layer; 2 chunks each side: 3 layers.
        let f = try JobAggregationTests.Fixture(progressMs: 100)
        var agg = try f.aggregation()
        #expect(f.tasks.count == 9)
        var seen: [(Int64, ProgressMessage)] = []
        var now = t0 + 1_010
        for t in f.tasks.sorted(by: { ($0.layer, $0.rows.lowerBound) < ($1.layer, $1.rows.lowerBound) }) {
            let (outcome, actions) = agg.receive(try f.partial(t), nowMs: now)
            #expect(outcome == .accepted)
            seen += notices(actions).map { (now, $0) }
            now += 30
        }
        // Partials at 1 010, 1 040, … 1 250 (ms after t0): notices at the first, then once 100 ms
        // have passed since the last — 1 010, 1 130, 1 250 — except that the last partial closes
        // the job (its final says more than a notice).
        #expect(seen.map { $0.0 - t0 } == [1_010, 1_130])
        #expect(seen[0].1.layers == [.init(done: 1, needed: 3), .init(done: 0, needed: 3), .init(done: 0, needed: 3)])
        #expect(seen[1].1.layers == [.init(done: 3, needed: 3), .init(done: 2, needed: 3), .init(done: 0, needed: 3)])
        #expect(seen[1].1.elapsedMs == 130)
        #expect(agg.isClosed)
        #expect(agg.tasksTaken == [3, 3, 3])
    }

    @Test func aJobThatDoesNotAskGetsNone() throws {
        let f = try JobAggregationTests.Fixture()
        var agg = try f.aggregation()
        for t in f.tasks {
            #expect(notices(agg.receive(try f.partial(t), nowMs: t0 + 1_500).1).isEmpty)
        }
        #expect(agg.tasksTaken == [3, 3, 3])
    }

    @Test func duplicatesAndStrangersAreNotProgress() throws {
        let f = try JobAggregationTests.Fixture(progressMs: 20)
        var agg = try f.aggregation()
        let first = try f.partial(f.tasks[0])
        _ = agg.receive(first, nowMs: t0 + 1_100)
        let (again, actions) = agg.receive(first, nowMs: t0 + 1_200)
        #expect(again == .duplicate && notices(actions).isEmpty)
        #expect(agg.tasksTaken.reduce(0, +) == 1)
    }

    @Test func theIntervalIsValidatedWithTheJob() throws {
        var job = try JobAggregationTests.Fixture().job
        job.progressMs = 5
        #expect(throws: WireError.self) { try job.validate() }
        job.progressMs = 100
        try job.validate()
    }

    @Test func noticesRoundTripAndHostileBodiesAreRefused() throws {
        let p = ProgressMessage(job: "j-1", elapsedMs: 12.5, layers: [.init(done: 2, needed: 2), .init(done: 0, needed: 2)])
        let m = p.encode()
        #expect(m.body == [2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0])   // UInt32 LE pairs
        #expect(try ProgressMessage(decoding: m) == p)
        #expect(p.routingKey == "job.j-1.progress")
        var odd = m
        odd.body.removeLast()
        #expect(throws: WireError.self) { try ProgressMessage(decoding: odd) }
        var empty = m
        empty.body = []
        #expect(throws: WireError.self) { try ProgressMessage(decoding: empty) }
        var over = m
        over.body = [3, 0, 0, 0, 2, 0, 0, 0]   // done > needed
        #expect(throws: WireError.self) { try ProgressMessage(decoding: over) }
        var huge = m
        huge.body = [UInt8](repeating: 1, count: 8 * (ProgressMessage.maxLayers + 1))
        #expect(throws: WireError.self) { try ProgressMessage(decoding: huge) }
        // An output is not a notice (watchers tell them apart by kind).
        let output = OutputMessage.failed(job: "j-1", of: 3, elapsedMs: 1, reason: "x").encode()
        #expect(throws: WireError.self) { try ProgressMessage(decoding: output) }
    }
}
