// Messages a hostile or buggy peer might send: each must end in sr.dead with a reason
// — never crash a role, never be redelivered to another replica, never be retried forever —
// and the pool must answer a valid job exactly right after. Run on both transports.
import SRCore
import SRProtocol
import SRSubmission
import SRTransport

extension PipelineScenarios {
    static func hostile(_ env: PipelineEnvironment) async throws {
        let (roles, aggregator, workers) = try await startRoles(env, consumers: 2)
        let producer = try await env.makeTransport()
        try await Topology.declare(on: producer)
        let marker = unique("hostile")
        let dead = try await producer.subscribe(queue: Topology.deadQueue, prefetch: 0)

        // 1. A valid task and a partial-shaped message whose headers nest an array 20 000 deep
        //    (~100 KB): deep enough to overflow a connection thread's stack if decoding recursed without a bound.
        //    In memory nothing is decoded, and a value that deep would only test Swift's own
        //    recursive release on a small stack: 100 levels show the same refusal there.
        let depth = producer is InMemoryTransport ? 100 : 20_000
        let victim = try ScenarioJob(id: unique("victim"), chunks: 2, seed: 61)
        let plan = try JobSubmitter(transport: producer).plan(victim.request)
        var deepTask = plan.tasks[0]
        deepTask.headers["x-nested"] = deepArray(depth)
        deepTask.headers["marker"] = .string(marker + "-deep-task")
        try await producer.publish(deepTask, Topology.taskRoute)
        var deepPartial = Message(body: [], headers: [
            "sr-version": .int(1), "sr-kind": .string("partial"), "sr-job": .string(victim.request.id!),
            "x-nested": deepArray(depth), "marker": .string(marker + "-deep-partial"),
        ])
        deepPartial.messageID = "deep"
        try await producer.publish(deepPartial, Topology.partialRoute)

        // 2. A task id longer than AMQP's 255-byte message_id (it would become the partial's id).
        var longID = plan.tasks[0]
        longID.headers[Header.task] = .string(String(repeating: "t", count: 300))
        longID.headers["marker"] = .string(marker + "-long-id")
        try await producer.publish(longID, Topology.taskRoute)

        // 3. A well-formed open record asking for an 8192 × 1100 answer: 144 MB of values and
        //    bounds, more than one broker message holds. Refused at open with a failed output.
        let hugeID = unique("huge")
        let hugeWatcher = try await OutputWatcher.watch([hugeID], on: producer)
        try await producer.publish(hugeOpenRecord(id: hugeID, marker: marker + "-huge"),
                                   Topology.openRoute)

        let expected = ["-deep-task": "nest deeper", "-deep-partial": "nest deeper", "-long-id": Header.task,
                        "-huge": "would not fit a broker message"]
        try await expectDeadLetters(expected, marker: marker, from: dead)
        let failed = try await outputs(until: hugeID, from: hugeWatcher)
        try require(failed.count == 1 && failed[0].status == .failed && failed[0].reason?.contains("would not fit") == true,
                    "the oversized job should get one failed final with its reason, got \(failed.map { "\($0.status) \($0.reason ?? "")" })")

        // Every role is alive and exact: a valid job completes, bit-identical to the reference.
        let job = try ScenarioJob(id: unique("after"), chunks: 3, seed: 62)
        let watcher = try await OutputWatcher.watch([job.request.id!], on: producer)
        _ = try await JobSubmitter(transport: producer).submit(job.request)
        let seen = try await outputs(until: job.request.id!, from: watcher)
        try require(seen.last?.status == .complete, "the job after the hostile messages did not complete: \(seen.map(\.status))")
        try require(seen.last!.values.elements == job.fixedPoint, "the final after the hostile messages is not exact")
        let consumerDead = workers.map(\.snapshot.deadLettered).reduce(0, +)
        try require(consumerDead >= 2 && (aggregator?.snapshot.deadLettered ?? 0) >= 2,
                    "counters: consumers dead-lettered \(consumerDead), aggregator \(aggregator?.snapshot.deadLettered ?? 0)")
        await roles.stop()
        await producer.close()
    }

    /// Reads sr.dead until a dead letter has arrived for every suffix of `expected` (messages
    /// carry header `marker` = marker + suffix), then checks each reason mentions its phrase.
    static func expectDeadLetters(_ expected: [String: String], marker: String, from dead: Subscription) async throws {
        let reasons = try await within(.seconds(120), "\(expected.count) dead letters") {
            var found: [String: String] = [:]
            for try await d in dead.deliveries {
                try await dead.ack(d)
                guard let m = d.message.headers["marker"]?.stringValue, m.hasPrefix(marker) else { continue }
                found[String(m.dropFirst(marker.count))] = d.message.headers[Header.deadReason]?.stringValue ?? ""
                if found.count == expected.count { break }
            }
            return found
        }
        await dead.cancel()
        for (k, phrase) in expected {
            try require(reasons[k]?.contains(phrase) == true, "dead letter \(k): reason \(reasons[k] ?? "missing") should mention \(phrase)")
        }
    }

    /// [[[… "x" …]]] nested `depth` levels, built without recursion.
    static func deepArray(_ depth: Int) -> HeaderValue {
        var v = HeaderValue.string("x")
        for _ in 0..<depth { v = .array([v]) }
        return v
    }

    /// An open record that passes every check but the answer's size (inline statistics for
    /// one chunk of A and X: 3 × 8192 + 3 × 1100 doubles, ~223 KB).
    static func hugeOpenRecord(id: String, marker: String) throws -> Message {
        let rows = 8192, vectors = 1100, now = WallClock.nowMs()
        let job = MatVecJob(id: id, mode: .layered, matrix: "inline", rows: rows, columns: 16, vectors: vectors,
                            partitionA: [2, -6], partitionX: [2, -6], layers: [[[0, 0]]], rowBlock: 512,
                            createdMs: now, deadline: Deadline(epochMs: now + 60_000))
        func stats(_ n: Int) -> ChunkedOperand.Statistics {
            .init(planeRowL1: [Array(repeating: 1, count: n)], planeRowMax: [Array(repeating: 1, count: n)],
                  valueRowL1: Array(repeating: 1, count: n))
        }
        var m = try OpenRecord(job: job, statisticsA: stats(rows), statisticsX: stats(vectors)).encode()
        m.headers["marker"] = .string(marker)
        return m
    }
}
