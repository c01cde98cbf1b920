// Verifiable answers: the aggregator trusts neither a consumer's partial nor a
// producer's statistics. A forged partial is refused and the honest copy still completes the
// job exactly; an open record whose statistics lie is refused with a failed output. The forged
// inputs are built here from the operands (chunk planes and Int64 products), independently of
// the aggregator's checksums.
import SRCore
import SRProtocol
import SRSubmission
import SRStore
import SRTransport

extension PipelineScenarios {
    static func verifiable(_ env: PipelineEnvironment) async throws {
        let (aggRoles, aggregator, _) = try await startRoles(env, consumers: 0)
        let producer = try await env.makeTransport()
        try await Topology.declare(on: producer)
        let marker = unique("verify")
        let dead = try await producer.subscribe(queue: Topology.deadQueue, prefetch: 0)
        let submitter = JobSubmitter(transport: producer)

        // 1. A registered matrix, layered: a forged layer-0 partial (one value moved by 1
        //    towards zero, so within every magnitude check) arrives before any consumer runs.
        let registered = try ScenarioJob(id: unique("vreg"), rows: 64, columns: 48, chunks: 2, rowBlock: 16, seed: 71)
        let digest = try env.store.register(registered.a, name: nil)
        try env.store.ensureStatistics(digest: digest, partition: registered.request.partitionA)
        var request = registered.request
        request.operand = .stored(digest: digest, rows: registered.a.rows, columns: registered.a.columns)
        let plan = try submitter.plan(request)
        let watcher = try await OutputWatcher.watch([plan.job.id], on: producer)
        try await publishHead(plan, tasks: 0, deadline: false, on: producer)
        let task = try TaskMessage(decoding: plan.tasks[0])
        var exact = try honestProduct(task, a: registered.a, x: registered.x, request: request)
        exact[0] += exact[0] > 0 ? -1 : 1
        var forged = PartialMessage(for: task, computeMicroseconds: 1, worker: "forger", exact: exact, values: []).encode()
        forged.headers["marker"] = .string(marker + "-layered")
        try await producer.publish(forged, Topology.partialRoute)

        // 2. An inline one-shot job: a forged block of float results (one value off by 1).
        var shot = try ScenarioJob(id: unique("vshot"), rows: 32, columns: 24, chunks: 2, rowBlock: 16, seed: 72).request
        shot.mode = .oneShot
        let shotPlan = try submitter.plan(shot)
        let shotWatcher = try await OutputWatcher.watch([shotPlan.job.id], on: producer)
        try await publishHead(shotPlan, tasks: 0, deadline: false, on: producer)
        let shotTask = try TaskMessage(decoding: shotPlan.tasks[0])
        let shotJob = try ScenarioJob(id: "ref", rows: 32, columns: 24, chunks: 2, rowBlock: 16, seed: 72)
        var values = shotTask.rows.map { k in shotJob.float64(row: k).value }
        values[0] += 1
        var forgedShot = PartialMessage(for: shotTask, computeMicroseconds: 1, worker: "forger", exact: [], values: values).encode()
        forgedShot.headers["marker"] = .string(marker + "-one-shot")
        try await producer.publish(forgedShot, Topology.partialRoute)

        // 3. Lying statistics: an inline job whose record shrinks A's statistics by 1e-9, and
        //    the registered job's twin whose record shrinks x's. Both must be refused.
        let liarA = try submitter.plan(try ScenarioJob(id: unique("vlieA"), chunks: 2, seed: 73).request)
        var liarX = request
        liarX.id = unique("vlieX")
        let liarXPlan = try submitter.plan(liarX)
        let liarWatcher = try await OutputWatcher.watch([liarA.job.id, liarXPlan.job.id], on: producer)
        for (p, which) in [(liarA, "A"), (liarXPlan, "x")] {
            var record = try OpenRecord(decoding: p.open)
            func shrink(_ s: ChunkedOperand.Statistics) -> ChunkedOperand.Statistics {
                .init(planeRowL1: s.planeRowL1.map { $0.map { $0 * 1e-9 } }, planeRowMax: s.planeRowMax.map { $0.map { $0 * 1e-9 } },
                      valueRowL1: s.valueRowL1.map { $0 * 1e-9 })
            }
            if which == "A" { record.statisticsA = shrink(record.statisticsA!) } else { record.statisticsX = shrink(record.statisticsX) }
            var m = try record.encode()
            m.headers["marker"] = .string(marker + "-lie-" + which)
            try await producer.publish(m, Topology.openRoute)
        }

        let expected = ["-layered": "failed its checksum", "-one-shot": "failed its checksum",
                        "-lie-A": "statistics of A in the open record do not match", "-lie-x": "statistics of x in the open record do not match"]
        try await expectDeadLetters(expected, marker: marker, from: dead)
        for id in [liarA.job.id, liarXPlan.job.id] {
            let out = try await outputs(until: id, from: liarWatcher)
            try require(out.count == 1 && out[0].status == .failed && out[0].reason?.contains("do not match") == true,
                        "job \(id) with lying statistics: \(out.map { "\($0.status) \($0.reason ?? "")" })")
        }

        // The honest consumer then computes every task: both jobs complete, exact and verified.
        let (consumers, _, _) = try await startRoles(env, consumers: 1, aggregator: false)
        for t in plan.tasks + shotPlan.tasks { try await producer.publish(t, Topology.taskRoute) }
        let seen = try await outputs(until: plan.job.id, from: watcher)
        try require(seen.last?.status == .complete && seen.last!.values.elements == registered.fixedPoint,
                    "the registered job after a forged partial: \(String(describing: seen.last?.status)), exact \(seen.last?.values.elements == registered.fixedPoint)")
        try require(seen.allSatisfy { $0.verified == true }, "outputs of a checked job should say sr-verified: true")
        let shotFinal = try await outputs(until: shotPlan.job.id, from: shotWatcher).last!
        try require(shotFinal.status == .complete && shotFinal.verified == true, "the one-shot job after a forged partial: \(shotFinal.status)")
        for k in 0..<shotJob.a.rows {
            let (v, slack) = shotJob.float64(row: k)
            try require(abs(v - shotFinal.values[k, 0]) <= shotFinal.bound[k, 0] + slack, "one-shot row \(k) outside its bound")
        }
        try require((aggregator?.snapshot.forgedPartials ?? 0) == 2, "forged partials counted: \(aggregator?.snapshot.forgedPartials ?? -1)")
        await consumers.stop()
        await aggRoles.stop()
        await producer.close()
    }

    /// A_i[rows] · X_j for each pair of `task`, row-major (rows × B), in Int64 from the chunk
    /// planes of the operands.
    static func honestProduct(_ task: TaskMessage, a: Matrix<Double>, x: Matrix<Double>, request: MatVecRequest) throws -> [Int64] {
        let pa = try ChunkedOperand(decomposing: a, partition: request.partitionA).planes
        let px = try ChunkedOperand.vectors(x, partition: request.partitionX).planes
        var out: [Int64] = []
        for pair in task.pairs {
            for r in task.rows {
                for v in 0..<x.columns {
                    var s: Int64 = 0
                    for c in 0..<a.columns { s += pa[pair.a][r, c] * px[pair.x][v, c] }
                    out.append(s)
                }
            }
        }
        return out
    }
}
