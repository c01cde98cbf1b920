// End-to-end behaviour of the pipeline (producer, consumers, aggregator) that must hold on
// every transport: run by the unit tests on the in-memory broker and by the integration tests
// on a real RabbitMQ. Each scenario checks results against an independent reference
// (Int128 fixed-point arithmetic and float64 products computed here).
import Foundation
import Logging
import SRCore
import SRProtocol
import SRWorker
import SRAggregatorService
import SRSubmission
import SRStore
import SRTransport

/// What a scenario gets: transports to one broker (each call is a new connection) and a store.
public struct PipelineEnvironment: Sendable {
    public let makeTransport: @Sendable () async throws -> any Transport
    public let store: OperandStore
    public init(makeTransport: @escaping @Sendable () async throws -> any Transport, store: OperandStore) {
        self.makeTransport = makeTransport
        self.store = store
    }
}

public struct PipelineScenario: Sendable, CustomStringConvertible {
    public let name: String
    public let run: @Sendable (PipelineEnvironment) async throws -> Void
    public var description: String { name }
}

public struct ScenarioFailure: Error, CustomStringConvertible {
    public let description: String
}

func require(_ condition: Bool, _ message: @autoclosure () -> String, line: Int = #line) throws {
    if !condition { throw ScenarioFailure(description: "line \(line): \(message())") }
}

/// Runs `body` with a timeout; throws if it does not finish in time.
func within<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask { try await Task.sleep(for: limit); return nil }
        let first = try await group.next()!
        group.cancelAll()
        guard let value = first else { throw ScenarioFailure(description: "timed out after \(limit): \(what)") }
        return value
    }
}

/// A small random job with an inline matrix, and its independent references.
struct ScenarioJob {
    let a: Matrix<Double>
    let x: Matrix<Double>
    let request: MatVecRequest

    init(id: String, rows: Int = 48, columns: Int = 40, chunks: Int = 3, bits: Int = 5, rowBlock: Int = 16,
         deadline: Duration = .seconds(600), seed: UInt64) throws {
        var g = SplitMix64(seed: seed)
        a = Matrix(rows: rows, columns: columns, elements: (0..<(rows * columns)).map { _ in Double.random(in: -4..<4, using: &g) })
        x = Matrix(column: (0..<columns).map { _ in Double.random(in: -1..<1, using: &g) })
        let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: chunks, bits: bits)
        let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: chunks, bits: bits)
        request = MatVecRequest(operand: .inline(a), vectors: x, partitionA: p, partitionX: q,
                                schedule: try .bySignificance(chunksA: chunks, chunksX: chunks),
                                deadline: deadline, rowBlock: rowBlock, id: id)
    }

    /// Ã·x̃ rounded to Double, computed from the values (sign(v)·⌊|v|/2^{p_n}⌋) in Int128.
    var fixedPoint: [Double] {
        let pn = request.partitionA.finestExponent, qn = request.partitionX.finestExponent
        func units(_ v: Double, _ e: Int) -> Int128 {
            let m = Int128((abs(v) * Double(sign: .plus, exponent: -e, significand: 1)).rounded(.down))
            return v < 0 ? -m : m
        }
        return (0..<a.rows).map { k in
            var s: Int128 = 0
            for c in 0..<a.columns { s += units(a[k, c], pn) * units(x[c, 0], qn) }
            return Double(s) * Double(sign: .plus, exponent: pn + qn, significand: 1)
        }
    }

    /// Σ_c a·x in float64 with an error allowance for its own rounding.
    func float64(row k: Int) -> (value: Double, slack: Double) {
        var s = 0.0, m = 0.0
        for c in 0..<a.columns { s += a[k, c] * x[c, 0]; m += abs(a[k, c] * x[c, 0]) }
        return (s, Double(a.columns + 1) * 0x1p-52 * m)
    }
}


/// Roles running in this process, each on its own connection; stopped by cancelling.
final class RunningRoles: Sendable {
    let tasks: [Task<Void, Never>]
    let transports: [any Transport]
    init(tasks: [Task<Void, Never>], transports: [any Transport]) {
        self.tasks = tasks
        self.transports = transports
    }
    func stop() async {
        for t in tasks { t.cancel() }
        for t in transports { await t.close() }
        for t in tasks { await t.value }
    }
}

func quietLogger(_ label: String) -> Logger {
    var l = Logger(label: label)
    l.logLevel = .critical
    return l
}

/// Starts an aggregator and `consumers` workers.
func startRoles(_ env: PipelineEnvironment, consumers: Int, recordOrder: Bool = false,
                aggregator: Bool = true, prefetch: Int = 1) async throws -> (RunningRoles, AggregatorService?, [TaskWorker]) {
    var tasks: [Task<Void, Never>] = [], transports: [any Transport] = []
    var agg: AggregatorService?
    if aggregator {
        let t = try await env.makeTransport()
        let service = AggregatorService(transport: t, store: env.store, logger: quietLogger("aggregator"))
        transports.append(t)
        tasks.append(Task { try? await service.run() })
        agg = service
    }
    var workers: [TaskWorker] = []
    for i in 0..<consumers {
        let t = try await env.makeTransport()
        var c = TaskWorker.Configuration()
        c.name = "w\(i)"
        c.recordOrder = recordOrder
        c.prefetch = prefetch
        let w = TaskWorker(transport: t, store: env.store, configuration: c, logger: quietLogger("worker"))
        transports.append(t)
        tasks.append(Task { try? await w.run() })
        workers.append(w)
    }
    return (RunningRoles(tasks: tasks, transports: transports), agg, workers)
}

/// Reads outputs until the job's final one; returns them all in arrival order.
func outputs(until job: String, from watcher: OutputWatcher, limit: Duration = .seconds(120)) async throws -> [OutputMessage] {
    try await within(limit, "the final output of \(job)") {
        var seen: [OutputMessage] = []
        while let o = try await watcher.next() {
            guard o.job == job else { continue }
            seen.append(o)
            if o.status != .partial { return seen }
        }
        throw ScenarioFailure(description: "output stream ended before \(job)'s final output")
    }
}

public enum PipelineScenarios {
    public static let all: [PipelineScenario] = [
        PipelineScenario(name: "resolutions arrive in order; the final is exact and within its bound", run: ordered),
        PipelineScenario(name: "a backlog is served layer 0 of every job before any layer 1", run: layerPriority),
        PipelineScenario(name: "a deadline emits the best complete resolution once, on time", run: deadline),
        PipelineScenario(name: "a consumer dying mid-job loses nothing; duplicates are ignored", run: consumerDies),
        PipelineScenario(name: "malformed tasks and partials end in sr.dead with a reason", run: malformed),
        PipelineScenario(name: "hostile messages (deep headers, long ids, oversized answers) are dead-lettered; the pool stays exact",
                         run: hostile),
        PipelineScenario(name: "a forged partial is refused and the job still ends exact; lying statistics are refused",
                         run: verifiable),
        PipelineScenario(name: "a stalled consumer holds back an uncoded job, not a coded one (any K of N tasks decode)",
                         run: coded),
        PipelineScenario(name: "a task no consumer can compute fails its job at once, with the reason and the worker",
                         run: uncomputableTask),
        PipelineScenario(name: "a final published before its aggregator died is not repeated by the next one", run: ledger),
        PipelineScenario(name: "an aggregator dying mid-job loses nothing after a restart", run: aggregatorRestarts),
        PipelineScenario(name: "an aggregator restarted after the deadline emits the best resolution computed",
                         run: restartAfterDeadline),
    ]

    /// A job's open record, deadline timer and only its first `tasks` tasks: a pool too slow
    /// for the rest (the scenarios publish what else they need themselves).
    /// `deadline: false` withholds the deadline timer: the test starts it (`startDeadline`) once
    /// the work it expects before the deadline is done, so no assertion depends on how fast
    /// this machine computes.
    static func publishHead(_ plan: JobPlan, tasks: Int, deadline: Bool = true, on producer: any Transport) async throws {
        try await Topology.declare(on: producer)
        try await producer.publish(plan.open, Topology.openRoute)
        if deadline { try await startDeadline(plan, on: producer) }
        for t in plan.tasks.prefix(tasks) { try await producer.publish(t, Topology.taskRoute) }
    }

    /// Publishes the job's deadline message into its delay queue: it fires one relative deadline
    /// from now. `after` uses the delay queue of that many milliseconds instead: a job with a
    /// far deadline (which the aggregator's own clock never reaches in a test) then gets its
    /// deadline message through the same delay-queue path, at a time the test chooses.
    static func startDeadline(_ plan: JobPlan, after ms: Int64? = nil, on producer: any Transport) async throws {
        let queue = ms.map { Topology.delayQueue(milliseconds: $0) } ?? plan.deadlineQueue
        try await Topology.declareDelayQueue(queue, on: producer)
        try await producer.publish(plan.deadline, Topology.delayRoute(queue))
    }

    static func unique(_ base: String) -> String { "\(base)\(UInt32.random(in: 0...UInt32.max))" }

    static func ordered(_ env: PipelineEnvironment) async throws {
        let (roles, _, _) = try await startRoles(env, consumers: 1)
        let producer = try await env.makeTransport()
        let job = try ScenarioJob(id: unique("ord"), seed: 11)
        let watcher = try await OutputWatcher.watch([job.request.id!], on: producer)
        _ = try await JobSubmitter(transport: producer).submit(job.request)
        let seen = try await outputs(until: job.request.id!, from: watcher)
        await roles.stop()
        await producer.close()
        try require(seen.map(\.resolution) == [1, 2, 3, 4, 5], "resolutions \(seen.map(\.resolution))")
        try require(seen.map(\.status) == [.partial, .partial, .partial, .partial, .complete], "statuses \(seen.map(\.status))")
        try require(seen.last!.values.elements == job.fixedPoint, "final ≠ the fixed-point product")
        for o in seen {
            for k in 0..<job.a.rows {
                let (v, slack) = job.float64(row: k)
                try require(abs(v - o.values[k, 0]) <= o.bound[k, 0] + slack, "resolution \(o.resolution) row \(k) outside its bound")
            }
        }
    }

    static func layerPriority(_ env: PipelineEnvironment) async throws {
        // The aggregator runs; the consumer starts only once the backlog is in the queue.
        let (aggRoles, _, _) = try await startRoles(env, consumers: 0)
        let producer = try await env.makeTransport()
        try await Topology.declare(on: producer)
        let submitter = JobSubmitter(transport: producer)
        let prefix = unique("prio")
        var ids: [String] = []
        for i in 0..<20 {
            let job = try ScenarioJob(id: "\(prefix)-\(i)", rows: 16, columns: 16, chunks: 2, rowBlock: 16, seed: UInt64(100 + i))
            ids.append(job.request.id!)
            _ = try await submitter.submit(job.request)
        }
        let watcher = try await OutputWatcher.watch(ids, on: producer)
        let (roles, _, workers) = try await startRoles(env, consumers: 1, recordOrder: true, aggregator: false)
        for id in ids { _ = try await outputs(until: id, from: watcher) }
        await roles.stop()
        await aggRoles.stop()
        await producer.close()
        // Task ids are <job>/L<layer>/<block>: one task per layer (m = 2: 3 layers) and block.
        let layers = workers[0].snapshot.order.filter { $0.hasPrefix(prefix) }.map { id -> Int in
            Int(id.split(separator: "/")[1].dropFirst())!
        }
        try require(layers.count == 20 * 3, "computed \(layers.count) tasks, expected 60")
        let lastLayer0 = layers.lastIndex(of: 0)!, firstLayer1 = layers.firstIndex(of: 1)!
        try require(lastLayer0 < firstLayer1, "a layer-1 task ran at \(firstLayer1) before the last layer-0 task at \(lastLayer0): \(layers)")
        let firstLayer2 = layers.firstIndex(of: 2)!, lastLayer1 = layers.lastIndex(of: 1)!
        try require(lastLayer1 < firstLayer2, "layer 2 started before layer 1 finished: \(layers)")
    }

    static func deadline(_ env: PipelineEnvironment) async throws {
        let (aggRoles, _, _) = try await startRoles(env, consumers: 0)
        let producer = try await env.makeTransport()
        let job = try ScenarioJob(id: unique("dl"), chunks: 3, rowBlock: 48, deadline: .seconds(600), seed: 21)
        let id = job.request.id!
        let watcher = try await OutputWatcher.watch([id], on: producer)
        let plan = try JobSubmitter(transport: producer).plan(job.request)
        // A pool too slow for this deadline: only layer 0's task is ever computed (the other
        // tasks are withheld), so resolution 1 is the best the deadline can emit. Its deadline
        // message goes through a 300 ms delay queue once resolution 1 is out, however long that
        // took on this machine.
        try await publishHead(plan, tasks: 1, deadline: false, on: producer)
        let (roles, _, _) = try await startRoles(env, consumers: 1, aggregator: false)
        let first = try await within(.seconds(120), "resolution 1") { try await watcher.next() }
        try require(first?.resolution == 1 && first?.status == .partial, "expected resolution 1 first, got \(String(describing: first))")
        let fired = WallClock.nowMs()
        try await startDeadline(plan, after: 300, on: producer)
        let final = try await outputs(until: id, from: watcher, limit: .seconds(120)).last!
        let waited = WallClock.nowMs() - fired
        try require(final.status == .deadline, "status \(final.status), expected deadline")
        try require(final.resolution == 1, "the deadline output carries resolution \(final.resolution), expected the completed 1")
        // Not before the delay queue released it (how late it may be under load is measured
        // by the benchmarks, not here).
        try require(waited >= 295, "deadline output \(waited) ms after its 300 ms timer started")
        for k in 0..<job.a.rows {
            let (v, slack) = job.float64(row: k)
            try require(abs(v - final.values[k, 0]) <= final.bound[k, 0] + slack, "row \(k) outside its bound")
        }
        // Exactly once: nothing more for this job within 500 ms (bounded absence check).
        let extra = try? await within(.milliseconds(500), "no second final") { try await watcher.next() }
        try require(extra == nil || extra?.job != id, "a second output for \(id) after its final")
        await roles.stop()
        await aggRoles.stop()
        await producer.close()
    }

    static func consumerDies(_ env: PipelineEnvironment) async throws {
        let (aggRoles, aggregator, _) = try await startRoles(env, consumers: 0)
        let producer = try await env.makeTransport()
        let job = try ScenarioJob(id: unique("die"), rows: 64, chunks: 3, rowBlock: 8, seed: 31)
        let id = job.request.id!
        let watcher = try await OutputWatcher.watch([id], on: producer)
        _ = try await JobSubmitter(transport: producer).submit(job.request)
        // One consumer takes tasks and dies (its connection closes with a task unacked)
        // right after its first partial; a second one finishes the job.
        // Prefetch 10: when it dies it holds several unacked tasks, which must be redelivered.
        let (victim, _, victimWorkers) = try await startRoles(env, consumers: 1, aggregator: false, prefetch: 10)
        _ = try await within(.seconds(120), "the victim's first computed task") {
            while victimWorkers[0].snapshot.computed == 0 { await Task.yield() }
            return true
        }
        await victim.stop()
        let (survivors, _, _) = try await startRoles(env, consumers: 1, aggregator: false)
        let seen = try await outputs(until: id, from: watcher)
        await survivors.stop()
        try require(seen.last!.status == .complete, "status \(seen.last!.status)")
        try require(seen.last!.values.elements == job.fixedPoint, "final ≠ the fixed-point product")
        try require(seen.map(\.resolution) == Array(1...5), "resolutions \(seen.map(\.resolution))")
        _ = aggregator
        await aggRoles.stop()
        await producer.close()
    }

    static func malformed(_ env: PipelineEnvironment) async throws {
        let (roles, aggregator, workers) = try await startRoles(env, consumers: 1)
        let producer = try await env.makeTransport()
        try await Topology.declare(on: producer)
        let marker = unique("bad")
        let dead = try await producer.subscribe(queue: Topology.deadQueue, prefetch: 0)
        var badTask = Message(body: [1, 2, 3], headers: ["sr-version": .int(1), "sr-kind": .string("task"), "marker": .string(marker)])
        badTask.priority = 9
        try await producer.publish(badTask, Topology.taskRoute)
        let badPartial = Message(body: [9], headers: ["sr-version": .int(1), "sr-kind": .string("partial"), "marker": .string(marker)])
        try await producer.publish(badPartial, Topology.partialRoute)
        var reasons: [String: String] = [:]
        try await within(.seconds(120), "two dead letters") {
            var found: [String: String] = [:]
            for try await d in dead.deliveries {
                try await dead.ack(d)
                guard d.message.headers["marker"]?.stringValue == marker else { continue }
                found[d.message.headers["sr-dead-queue"]?.stringValue ?? "?"] = d.message.headers[Header.deadReason]?.stringValue
                if found.count == 2 { break }
            }
            return found
        }.forEach { reasons[$0.key] = $0.value }
        await dead.cancel()
        try require(reasons[Topology.tasksQueue]?.isEmpty == false, "no reason for the task: \(reasons)")
        try require(reasons[Topology.partialsQueue]?.isEmpty == false, "no reason for the partial: \(reasons)")
        // Every role keeps running: a good job still completes.
        let job = try ScenarioJob(id: unique("after"), chunks: 2, seed: 41)
        let watcher = try await OutputWatcher.watch([job.request.id!], on: producer)
        _ = try await JobSubmitter(transport: producer).submit(job.request)
        let seen = try await outputs(until: job.request.id!, from: watcher)
        try require(seen.last?.status == .complete, "the job after the bad messages did not complete")
        try require(workers[0].snapshot.deadLettered >= 1 && (aggregator?.snapshot.deadLettered ?? 0) >= 1, "counters did not record the dead letters")
        await roles.stop()
        await producer.close()
    }

    static func aggregatorRestarts(_ env: PipelineEnvironment) async throws {
        let producer = try await env.makeTransport()
        let job = try ScenarioJob(id: unique("agg"), chunks: 3, rowBlock: 16, seed: 51)
        let id = job.request.id!
        let watcher = try await OutputWatcher.watch([id], on: producer)
        let plan = try JobSubmitter(transport: producer).plan(job.request)
        // Layer 0 first; the aggregator dies once it has emitted resolution 1 (its inputs unacked).
        try await publishHead(plan, tasks: 0, on: producer)
        let layer0 = plan.tasks.prefix(3)
        for t in layer0 { try await producer.publish(t, Topology.taskRoute) }
        let (first, _, _) = try await startRoles(env, consumers: 1)
        let r1 = try await within(.seconds(120), "resolution 1") { try await watcher.next() }
        try require(r1?.resolution == 1, "expected resolution 1, got \(String(describing: r1?.resolution))")
        await first.stop()
        // The rest of the job arrives while no aggregator runs; a new one must finish it.
        for t in plan.tasks.dropFirst(3) { try await producer.publish(t, Topology.taskRoute) }
        let (second, _, _) = try await startRoles(env, consumers: 1)
        let seen = try await outputs(until: id, from: watcher)
        await second.stop()
        await producer.close()
        try require(seen.last?.status == .complete, "status \(String(describing: seen.last?.status))")
        try require(seen.last!.values.elements == job.fixedPoint, "final ≠ the fixed-point product after the restart")
    }

    static func restartAfterDeadline(_ env: PipelineEnvironment) async throws {
        let producer = try await env.makeTransport()
        let job = try ScenarioJob(id: unique("ard"), chunks: 3, rowBlock: 48, deadline: .seconds(600), seed: 52)
        let id = job.request.id!
        let watcher = try await OutputWatcher.watch([id], on: producer)
        let plan = try JobSubmitter(transport: producer).plan(job.request)
        // Only layer 0 is ever computed; the aggregator dies after emitting resolution 1 and the
        // deadline fires (`srproduce deadline`) while none runs: the next one's deadline output
        // must still carry resolution 1 (replayed from the held partial), not nothing.
        try await publishHead(plan, tasks: 1, deadline: false, on: producer)
        let (first, _, _) = try await startRoles(env, consumers: 1)
        let r1 = try await within(.seconds(120), "resolution 1") { try await watcher.next() }
        try require(r1?.resolution == 1, "expected resolution 1, got \(String(describing: r1?.resolution))")
        await first.stop()
        try await JobSubmitter(transport: producer).fireDeadline(job: id)
        let (second, _, _) = try await startRoles(env, consumers: 0)
        let final = try await outputs(until: id, from: watcher).last!
        await second.stop()
        await producer.close()
        try require(final.status == .deadline && final.resolution == 1,
                    "after the restart: status \(final.status), resolution \(final.resolution); expected deadline at 1")
    }
}
