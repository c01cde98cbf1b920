// Coded tasks: a consumer that stalls holding a task holds back an uncoded job
// forever, and a coded one (Ω = 1.5) not at all. The stalled consumer is a subscriber that
// takes tasks and never settles them — what a SIGSTOPped or swapped-out consumer looks like to
// the broker. No assertion depends on timing: the uncoded job cannot complete while its task is
// held, and its deadline is fired by the test once the coded job is done.
import SRCore
import SRProtocol
import SRSubmission
import SRStore
import SRTransport

extension PipelineScenarios {
    static func coded(_ env: PipelineEnvironment) async throws {
        let (aggRoles, _, _) = try await startRoles(env, consumers: 0)
        let producer = try await env.makeTransport()
        try await Topology.declare(on: producer)
        let submitter = JobSubmitter(transport: producer)

        // One registered 64 × 48 matrix in two row blocks (K = 2); the same x for both jobs.
        let base = try ScenarioJob(id: "ref", rows: 64, columns: 48, chunks: 2, rowBlock: 32, seed: 81)
        let digest = try env.store.register(base.a, name: nil)
        try env.store.ensureStatistics(digest: digest, partition: base.request.partitionA)
        var uncoded = base.request
        uncoded.operand = .stored(digest: digest, rows: 64, columns: 48)
        uncoded.id = unique("uncoded")
        var coded = uncoded
        coded.id = unique("coded")
        coded.redundancy = 1.5
        let uncodedPlan = try submitter.plan(uncoded), codedPlan = try submitter.plan(coded)
        try require(uncodedPlan.job.codedTasks == nil && codedPlan.job.codedTasks == 3,
                    "codes: \(String(describing: uncodedPlan.job.codedTasks)) / \(String(describing: codedPlan.job.codedTasks))")
        let watcher = try await OutputWatcher.watch([uncodedPlan.job.id, codedPlan.job.id], on: producer)
        for plan in [uncodedPlan, codedPlan] { try await JobPlanner.publish(plan, on: producer) }

        // The stalled consumer takes the three highest-priority tasks — both layer-0 row blocks
        // of the uncoded job and the first of the coded one — and never answers.
        let stalled = try await env.makeTransport()
        let held = try await stalled.subscribe(queue: Topology.tasksQueue, prefetch: 3)
        let taken = try await within(.seconds(300), "three tasks for the stalled consumer") {
            var ids: [String] = []
            for try await d in held.deliveries {
                ids.append(d.message.headers[Header.task]?.stringValue ?? "?")
                if ids.count == 3 { break }
            }
            return ids
        }
        try require(taken == ["\(uncoded.id!)/L0/0", "\(uncoded.id!)/L0/1", "\(coded.id!)/L0/0"], "stalled consumer holds \(taken)")

        // Two healthy consumers: the coded job completes, exact, without the held task.
        let (consumers, _, _) = try await startRoles(env, consumers: 2, aggregator: false)
        let seen = try await outputs(until: codedPlan.job.id, from: watcher)
        try require(seen.map(\.resolution) == [1, 2, 3] && seen.last?.status == .complete,
                    "coded job: \(seen.map { "r\($0.resolution) \($0.status)" })")
        try require(seen.last!.values.elements == base.fixedPoint, "the coded job's final is not the fixed-point product")

        // The uncoded job has nothing: its layer 0 waits for the held tasks. At its deadline
        // (fired now) it answers with resolution 0 and the a-priori bound.
        try await startDeadline(uncodedPlan, after: 1, on: producer)
        let stuck = try await outputs(until: uncodedPlan.job.id, from: watcher)
        try require(stuck.count == 1 && stuck[0].status == .deadline && stuck[0].resolution == 0,
                    "uncoded job with a stalled consumer: \(stuck.map { "r\($0.resolution) \($0.status)" })")

        await held.cancel()
        await stalled.close()
        await consumers.stop()
        try await purge(env, producer: producer, job: base, digest: digest)
        await aggRoles.stop()
        await producer.close()
    }

    /// Once a coded layer is decoded, a consumer drops its remaining tasks unread: layer 0's
    /// two row blocks are answered here, and its parity task, published after the consumer
    /// heard the done notice, is dropped, not computed.
    static func purge(_ env: PipelineEnvironment, producer: any Transport, job base: ScenarioJob, digest: String) async throws {
        let (consumerRoles, _, workers) = try await startRoles(env, consumers: 1, recordOrder: true, aggregator: false)
        var request = base.request
        request.operand = .stored(digest: digest, rows: 64, columns: 48)
        request.id = unique("purge")
        request.redundancy = 1.5
        let plan = try JobSubmitter(transport: producer).plan(request)
        let tasks = try plan.tasks.map { try TaskMessage(decoding: $0) }
        try await publishHead(plan, tasks: 0, deadline: false, on: producer)
        // The consumer must be listening for done notices before layer 0 is decoded.
        try await eventually("the consumer subscribed") { workers[0].isListeningForDoneNotices }
        for t in tasks where t.layer == 0 && !t.isParity {
            let exact = try honestProduct(t, a: base.a, x: base.x, request: request)
            try await producer.publish(PartialMessage(for: t, computeMicroseconds: 1, worker: "test", exact: exact, values: []).encode(),
                                       Topology.partialRoute)
        }
        try await eventually("the done notice of layer 0 reached the consumer") { workers[0].snapshot.doneNotices >= 1 }
        let parity = plan.tasks[tasks.firstIndex { $0.layer == 0 && $0.isParity }!]
        try await producer.publish(parity, Topology.taskRoute)
        try await eventually("the parity task of the decoded layer was dropped") { workers[0].snapshot.droppedDecoded == 1 }
        // (It may compute the tasks the stalled consumer held, returned to the queue: not this job's.)
        let computed = workers[0].snapshot.order.filter { $0.hasPrefix(request.id! + "/") }
        try require(computed.isEmpty, "the consumer computed \(computed) of a decoded layer")
        await consumerRoles.stop()
    }
}
