// A task no consumer can compute fails its job at once, with the reason and the worker, instead
// of leaving the submitter to find an empty answer at the deadline. Here the consumer's operand
// store is not the one the matrix was registered in (SR_STORE set differently, a volume not
// mounted): the aggregator opens the job, the consumer cannot find the operand — twice, the
// second time on redelivery — and dead-letters the task. Both orders are driven, each waited
// for as an event: the notice after the job's open record, and the notice first (tasks and the
// open record travel on different queues, so it can overtake the record it belongs to).
import Foundation
import SRCore
import SRProtocol
import SRWorker
import SRSubmission
import SRStore
import SRTransport

extension PipelineScenarios {
    static func uncomputableTask(_ env: PipelineEnvironment) async throws {
        let (roles, aggregator, _) = try await startRoles(env, consumers: 0)
        let producer = try await env.makeTransport()
        try await Topology.declare(on: producer)

        let base = try ScenarioJob(id: "ref", rows: 32, columns: 24, chunks: 2, rowBlock: 32, seed: 91)
        let digest = try env.store.register(base.a, name: nil)
        try env.store.ensureStatistics(digest: digest, partition: base.request.partitionA)
        let elsewhere = FileManager.default.temporaryDirectory.appendingPathComponent("sr-other-store-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: elsewhere) }
        var configuration = TaskWorker.Configuration()
        configuration.name = "w-elsewhere"
        let workerTransport = try await env.makeTransport()
        let worker = TaskWorker(transport: workerTransport, store: OperandStore(root: elsewhere),
                                configuration: configuration, logger: quietLogger("worker"))
        let workerTask = Task<Void, Never> { try? await worker.run() }

        func plan(_ name: String) throws -> JobPlan {
            var request = base.request
            request.operand = .stored(digest: digest, rows: 32, columns: 24)
            request.id = unique(name)
            return try JobSubmitter(transport: producer).plan(request)   // deadline 600 s: not what answers
        }
        func expectFailed(_ plan: JobPlan, _ watcher: OutputWatcher) async throws {
            let seen = try await outputs(until: plan.job.id, from: watcher)
            try require(seen.count == 1 && seen[0].status == .failed, "outputs: \(seen.map { "r\($0.resolution) \($0.status)" })")
            let reason = seen[0].reason ?? ""
            try require(reason.contains("is not in the store") && reason.contains("'w-elsewhere'")
                        && reason.contains("task \(plan.job.id)/L"), "reason: \(reason)")
        }

        // 1. The open record first (handled: the aggregator counts it), then the tasks.
        let first = try plan("open-first")
        let watcher = try await OutputWatcher.watch([first.job.id], on: producer)
        try await publishHead(first, tasks: 0, on: producer)
        try await eventually(within: .seconds(300), "the aggregator opens \(first.job.id)") { aggregator?.snapshot.opened == 1 }
        for t in first.tasks { try await producer.publish(t, Topology.taskRoute) }
        try await expectFailed(first, watcher)

        // 2. The tasks first: the notice is on its way (or waiting) before the record is sent.
        let second = try plan("notice-first")
        let watcher2 = try await OutputWatcher.watch([second.job.id], on: producer)
        let before = worker.snapshot.deadLettered
        for t in second.tasks { try await producer.publish(t, Topology.taskRoute) }
        try await eventually(within: .seconds(300), "the worker dead-letters a task of \(second.job.id)") {
            worker.snapshot.deadLettered > before
        }
        try await publishHead(second, tasks: 0, on: producer)
        try await expectFailed(second, watcher2)
        try require(aggregator?.snapshot.failedTasks == 2, "aggregator failed \(String(describing: aggregator?.snapshot.failedTasks)) jobs")

        await RunningRoles(tasks: [workerTask], transports: [workerTransport]).stop()
        await roles.stop()
        await producer.close()
    }
}
