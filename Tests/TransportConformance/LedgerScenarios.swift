// A final output that left just before its aggregator died must not be repeated by the next
// one (the fault soak's case): the job's inputs come back redelivered, and the aggregator reads
// the finals ledger (sr.finals) first. The test plays the dying aggregator: it publishes the
// job's final itself, then the job's inputs, then starts the pool.
import SRCore
import SRProtocol
import SRSubmission
import SRTransport

extension PipelineScenarios {
    static func ledger(_ env: PipelineEnvironment) async throws {
        let producer = try await env.makeTransport()
        try await Topology.declare(on: producer)
        let job = try ScenarioJob(id: unique("ledger"), chunks: 2, seed: 81)
        let id = job.request.id!
        let watcher = try await OutputWatcher.watch([id], on: producer)
        let plan = try JobSubmitter(transport: producer).plan(job.request)
        // What the previous aggregator got out before it died: the exact final.
        let final = OutputMessage(job: id, resolution: 3, of: 3, status: .complete, elapsedMs: 1,
                                  values: Matrix(rows: job.a.rows, columns: 1, elements: job.fixedPoint),
                                  bound: Matrix(rows: job.a.rows, columns: 1, elements: Array(repeating: 0, count: job.a.rows)))
        try await producer.publish(final.encode(), exchange: Topology.outputsExchange, routingKey: final.routingKey)
        let first = try await within(.seconds(120), "the first final") { try await watcher.next() }
        try require(first?.status == .complete, "the test's own final did not arrive")
        // Its inputs, as the broker would redeliver them, and a pool to take them.
        try await publishHead(plan, tasks: plan.tasks.count, deadline: false, on: producer)
        let (roles, aggregator, _) = try await startRoles(env, consumers: 1)
        _ = try await within(.seconds(120), "the job's inputs acknowledged") {
            for queue in [Topology.jobsQueue, Topology.tasksQueue, Topology.partialsQueue] {
                while try await producer.messageCount(queue: queue) > 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
            return true
        }
        // Nothing more for this job (bounded absence check): answered once, by the first final.
        let extra = try? await within(.milliseconds(500), "no second final") { try await watcher.next() }
        try require(extra == nil, "a second output for \(id): \(String(describing: extra?.status)) \(String(describing: extra?.resolution))")
        try require(aggregator?.snapshot.opened == 0, "the job was opened again")
        await roles.stop()
        await producer.close()
    }
}
