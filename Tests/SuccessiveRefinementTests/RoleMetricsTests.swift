// The roles' metrics, captured in memory (swift-metrics' TestMetrics, passed through each role's
// configuration: nothing is bootstrapped), for a job run by a consumer and an aggregator over the
// in-memory broker; and the aggregator's per-layer task backlog as a value.
import Foundation
import Logging
import MetricsTestKit
import Testing
@testable import SRAggregatorService
@testable import SRCore
@testable import SRProtocol
@testable import SRStore
@testable import SRSubmission
@testable import SRTransport
@testable import SRWorker

@Suite struct RoleMetricsTests {
    func quiet(_ label: String) -> Logger {
        var l = Logger(label: label)
        l.logLevel = .critical
        return l
    }

    /// Polls `condition` every few milliseconds, failing after `limit`.
    func eventually(_ what: String, within limit: Duration = .seconds(60), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure("not within \(limit): \(what)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    struct TestFailure: Error, CustomStringConvertible { let description: String; init(_ d: String) { description = d } }

    @Test func aJobMovesTheConsumersAndTheAggregatorsCounters() async throws {
        let broker = InMemoryBroker()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sr-metrics-\(UUID().uuidString)").path
        defer {
            broker.shutdown()
            try? FileManager.default.removeItem(atPath: root)
        }
        let store = OperandStore(root: root)
        let metrics = TestMetrics()
        var aggregatorConfig = AggregatorService.Configuration()
        aggregatorConfig.metrics = metrics
        aggregatorConfig.queueSampling = .milliseconds(20)
        let aggregator = AggregatorService(transport: InMemoryTransport(broker: broker), store: store,
                                           configuration: aggregatorConfig, logger: quiet("aggregator"))
        var workerConfig = TaskWorker.Configuration()
        workerConfig.metrics = metrics
        workerConfig.queueSampling = .milliseconds(20)
        let worker = TaskWorker(transport: InMemoryTransport(broker: broker), store: store, configuration: workerConfig, logger: quiet("worker"))
        let roles = [Task { try? await aggregator.run() }, Task { try? await worker.run() }]
        defer { roles.forEach { $0.cancel() } }

        let producer = InMemoryTransport(broker: broker)
        try await Topology.declare(on: producer)
        // A reader of open notices, like `srproduce top`.
        let queue = try await producer.declare(QueueSpec(name: "", durable: false, exclusive: true, autoDelete: true))
        try await producer.bind(BindingSpec(queue: queue, exchange: Topology.outputsExchange, routingKey: "open.#"))
        let notices = try await producer.subscribe(queue: queue, prefetch: 0)

        var g = SplitMix64(seed: 7)
        let a = Matrix(rows: 32, columns: 16, elements: (0..<512).map { _ in Double.random(in: -2..<2, using: &g) })
        let x = Matrix(column: (0..<16).map { _ in Double.random(in: -1..<1, using: &g) })
        let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: 3, bits: 5)
        let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: 3, bits: 5)
        let request = MatVecRequest(operand: .inline(a), vectors: x, partitionA: p, partitionX: q,
                                    schedule: try .bySignificance(chunksA: 3, chunksX: 3), deadline: .seconds(600), rowBlock: 8, id: "metrics1")
        let watcher = try await OutputWatcher.watch(["metrics1"], on: producer)
        let job = try await JobSubmitter(transport: producer).submit(request)
        let final = try await watcher.nextFinal(within: .seconds(120))
        #expect(final?.status == .complete && final?.resolution == 5)

        // The open notice: every reader of open.# learns the job, its R and its deadline.
        var notice: OpenedNotice?
        for try await d in notices.deliveries {
            notice = try OpenedNotice(decoding: d.message)
            break
        }
        #expect(notice == OpenedNotice(job: "metrics1", of: 5, deadline: job.deadline, elapsedMs: notice?.elapsedMs ?? -1))

        // 4 row blocks × 5 layers, each computed once by the one consumer.
        let tasks = job.blockCount * job.layers.count
        try await eventually("the consumer counted \(tasks) tasks") {
            metrics.counterTotal(label: "sr_tasks_computed_total") == Int64(tasks)
        }
        #expect(metrics.counterTotal(label: "sr_tasks_computed_total", dimensions: [("kind", "matvec"), ("layer", "0")]) == Int64(job.blockCount))
        #expect(metrics.timers(label: "sr_task_compute_seconds").reduce(0) { $0 + $1.values.count } == tasks)
        #expect(metrics.counterTotal(label: "sr_tasks_skipped_total") == 0)
        try await eventually("the aggregator counted the final") {
            metrics.counterTotal(label: "sr_deadline_hits_total", dimensions: [("kind", "matvec")]) == 1
        }
        #expect(metrics.counterTotal(label: "sr_jobs_opened_total") == 1)
        #expect(metrics.counterTotal(label: "sr_refinements_total", dimensions: [("kind", "matvec"), ("status", "partial")]) == 4)
        #expect(metrics.counterTotal(label: "sr_refinements_total", dimensions: [("kind", "matvec"), ("status", "complete")]) == 1)
        #expect(metrics.counterTotal(label: "sr_partials_received_total") == Int64(tasks))
        #expect(metrics.counterTotal(label: "sr_deadline_misses_total") == 0)
        // One latency per resolution 1…5.
        for r in 1...5 {
            #expect(metrics.timers(label: "sr_resolution_latency_seconds", dimensions: [("kind", "matvec"), ("resolution", "\(r)")]).first?.values.count == 1)
        }
        // The job is answered: nothing outstanding, no job open; queues were sampled.
        #expect(try metrics.expectGauge("sr_jobs_open").lastValue == 0)
        for layer in 0..<5 {
            #expect(try metrics.expectGauge("sr_tasks_outstanding", [("layer", "\(layer)")]).lastValue == 0)
        }
        try await eventually("both roles sampled sr.tasks") {
            metrics.recorders(label: "sr_queue_messages", dimensions: [("queue", Topology.tasksQueue)]).count >= 1
        }
        await watcher.subscription.cancel()
        await notices.cancel()
    }

    @Test func aJobAnsweredAsItOpensLeavesNothingOutstanding() async throws {
        // Its deadline message comes before its open record: the aggregator answers the job the
        // moment it opens, and the backlog must not keep it open.
        let broker = InMemoryBroker()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sr-metrics-\(UUID().uuidString)").path
        defer {
            broker.shutdown()
            try? FileManager.default.removeItem(atPath: root)
        }
        let metrics = TestMetrics()
        var config = AggregatorService.Configuration()
        config.metrics = metrics
        let aggregator = AggregatorService(transport: InMemoryTransport(broker: broker), store: OperandStore(root: root),
                                           configuration: config, logger: quiet("aggregator"))
        let role = Task { try? await aggregator.run() }
        defer { role.cancel() }
        let producer = InMemoryTransport(broker: broker)
        try await Topology.declare(on: producer)
        // (It names a time after the job's creation: one issued before would be an earlier job's
        // with the same id, which the aggregator drops. An hour ahead: on a loaded machine the
        // wait below plus the submission can take over a minute.)
        try await producer.publish(DeadlineMessage(job: "early1", deadline: Deadline(epochMs: WallClock.nowMs() + 3_600_000)).encode(),
                                   Topology.deadlineRoute)
        let deadline = ContinuousClock.now + .seconds(60)
        while try await producer.messageCount(queue: Topology.deadlinesQueue) > 0 {
            guard ContinuousClock.now < deadline else { throw TestFailure("the aggregator never took the deadline message") }
            try await Task.sleep(for: .milliseconds(5))
        }
        let a = Matrix(rows: 8, columns: 4, elements: (0..<32).map { Double($0) / 16 - 1 })
        let x = Matrix(column: [0.5, -0.25, 1, 0.125])
        let request = MatVecRequest(operand: .inline(a), vectors: x,
                                    partitionA: try .fitted(maxMagnitude: 1, chunks: 2, bits: 5),
                                    partitionX: try .fitted(maxMagnitude: 1, chunks: 2, bits: 5),
                                    schedule: try .bySignificance(chunksA: 2, chunksX: 2), deadline: .seconds(600), rowBlock: 4, id: "early1")
        let watcher = try await OutputWatcher.watch(["early1"], on: producer)
        _ = try await JobSubmitter(transport: producer).submit(request)
        let final = try await watcher.nextFinal(within: .seconds(120))
        #expect(final?.status == .deadline && final?.resolution == 0)
        try await eventually("the aggregator counted the miss") {
            metrics.counterTotal(label: "sr_deadline_misses_total", dimensions: [("kind", "matvec"), ("result", "none")]) == 1
        }
        #expect(try metrics.expectGauge("sr_jobs_open").lastValue == 0)
        #expect(metrics.recorders(label: "sr_tasks_outstanding").allSatisfy { $0.lastValue == 0 })
        await watcher.subscription.cancel()
    }

    @Test func theBacklogFollowsATasksLifeByLayer() {
        var b = TaskBacklog()
        b.open("a", tasksPerLayer: [4, 4, 4])
        b.open("b", tasksPerLayer: [2])
        #expect(b.byLayer == [6, 4, 4] && b.openJobs == 2)
        b.answered("a", layer: 0)
        b.answered("a", layer: 0)
        b.answered("b", layer: 0)
        b.answered("b", layer: 0)
        b.answered("b", layer: 0)          // a duplicate: never below zero
        b.answered("nobody", layer: 0)     // an unknown job: ignored
        #expect(b.byLayer == [2, 4, 4])
        b.completed("a", layers: 1)        // resolution 1 out: layer 0's extra (coded) tasks are moot
        #expect(b.byLayer == [0, 4, 4])
        b.add("b", layer: 2, count: 3)     // inference: the aggregator published resolution 3
        #expect(b.byLayer == [0, 4, 7])
        b.close("a")
        #expect(b.byLayer == [0, 0, 3] && b.openJobs == 1)
        b.open("b", tasksPerLayer: [1])    // reopened (a restart): starts over
        #expect(b.byLayer == [1, 0, 0])
        b.close("b")
        #expect(b.byLayer == [0, 0, 0] && b.openJobs == 0 && b.jobs.isEmpty)
    }
}
