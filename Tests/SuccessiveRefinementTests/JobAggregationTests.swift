// The aggregator's per-job state machine, driven without a broker: tasks from the planner,
// partials computed here by plain integer loops, time passed in.
import Testing
@testable import SRAggregation
@testable import SRCore
@testable import SRKernels
@testable import SRProtocol
@testable import SRTransport

/// A plausible wall-clock origin (ms since the epoch) for the injected times.
let t0: Int64 = 1_700_000_000_000

@Suite struct JobAggregationTests {
    struct Fixture {
        let a: Matrix<Double>
        let x: Matrix<Double>
        let job: MatVecJob
        let plan: JobPlan
        let tasks: [TaskMessage]

        init(rows: Int = 10, columns: Int = 12, vectors: Int = 1, chunks: Int = 2, bits: Int = 5,
             rowBlock: Int = 4, mode: MatVecJob.Mode = .layered, seed: UInt64 = 1, progressMs: Int? = nil) throws {
            var g = SplitMix64(seed: seed)
            a = DyadicMatrix(rows: rows, columns: columns, totalBits: 16, fractionBits: 12, using: &g).matrix
            x = DyadicMatrix(rows: columns, columns: vectors, totalBits: 16, fractionBits: 12, using: &g).matrix
            let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: chunks, bits: bits)
            let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: chunks, bits: bits)
            let schedule = try LayerSchedule.bySignificance(chunksA: chunks, chunksX: chunks)
            var job = MatVecJob(id: "job-\(seed)", mode: mode, matrix: "inline", rows: rows, columns: columns, vectors: vectors,
                                partitionA: p.exponents, partitionX: q.exponents,
                                layers: schedule.layers.map { $0.map { [$0.a, $0.x] } }, rowBlock: rowBlock,
                                createdMs: t0 + 1_000, deadline: Deadline(epochMs: t0 + 2_000))
            job.progressMs = progressMs
            self.job = job
            plan = try JobPlanner.plan(job, statisticsA: ChunkedOperand(decomposing: a, partition: p).statistics, vectors: x,
                                       inlineMatrix: a, nowMs: t0 + 1_000)
            tasks = try plan.tasks.map { try TaskMessage(decoding: $0) }
        }

        /// The partial a correct consumer returns, computed with plain Int64 loops.
        func partial(_ t: TaskMessage) throws -> PartialMessage {
            let n = t.columns
            if t.mode == .oneShot {
                var values: [Double] = []
                for (i, _) in t.rows.enumerated() {
                    for v in 0..<t.vectors {
                        var s = 0.0
                        for c in 0..<n { s += t.inlineRows[i * n + c] * t.vectorValues[v * n + c] }
                        values.append(s)
                    }
                }
                return PartialMessage(for: t, computeMicroseconds: 1, worker: "test", exact: [], values: values)
            }
            let p = try PartitionVector(t.partitionA)
            var exact: [Int64] = []
            for (k, pair) in t.pairs.enumerated() {
                let x = Array(t.vectorChunk(k))
                for (i, _) in t.rows.enumerated() {
                    let chunks = try (0..<n).map { try p.chunks(of: t.inlineRows[i * n + $0])[pair.a] }
                    for v in 0..<t.vectors {
                        var s: Int64 = 0
                        for c in 0..<n { s += chunks[c] * x[v * n + c] }
                        exact.append(s)
                    }
                }
            }
            return PartialMessage(for: t, computeMicroseconds: 1, worker: "test", exact: exact, values: [])
        }

        func aggregation() throws -> JobAggregation {
            try JobAggregation(OpenRecord(decoding: plan.open))
        }

        /// Ã·X̃ rounded to Double, from the values directly (independent of the chunks).
        func fixedPoint() -> [Double] {
            let pn = job.partitionA.last!, qn = job.partitionX.last!
            let at = a.elements.map { truncatedUnits($0, finestExponent: pn) }
            let xt = x.elements.map { truncatedUnits($0, finestExponent: qn) }
            return exactIntegerProduct(at, xt, rows: a.rows, inner: a.columns, count: x.columns)
                .map { Double($0) * pow2(pn + qn) }
        }

        func float64() -> [Double] { OneShotProduct.product(a, x).elements }
    }

    func emitted(_ actions: [JobAggregation.Action]) -> [OutputMessage] {
        actions.compactMap { if case .emit(let o) = $0 { o } else { nil } }
    }

    func closes(_ actions: [JobAggregation.Action]) -> Int {
        actions.filter { if case .close = $0 { true } else { false } }.count
    }

    @Test(arguments: [1, 3])
    func resolutionsArriveInOrderAndTheFinalIsExact(vectors: Int) throws {
        let f = try Fixture(vectors: vectors, chunks: 3)
        var agg = try f.aggregation()
        var outputs: [OutputMessage] = []
        var closeCount = 0
        for (i, t) in f.tasks.enumerated() {
            let (outcome, actions) = agg.receive(try f.partial(t), nowMs: t0 + 1_100 + Int64(i))
            #expect(outcome == .accepted)
            outputs += emitted(actions)
            closeCount += closes(actions)
        }
        #expect(outputs.map(\.resolution) == [1, 2, 3, 4, 5])
        #expect(outputs.map(\.status) == [.partial, .partial, .partial, .partial, .complete])
        #expect(closeCount == 1)
        #expect(outputs.last!.values.elements == f.fixedPoint())
        let exact = f.float64()
        for o in outputs {
            for e in exact.indices { #expect(abs(o.values.elements[e] - exact[e]) <= o.bound.elements[e] * (1 + 1e-9)) }
        }
        // Bounds never grow.
        for (prev, next) in zip(outputs, outputs.dropFirst()) { #expect(next.maxBound <= prev.maxBound) }
    }

    @Test func outOfOrderBlocksAndDuplicatesChangeNothing() throws {
        let f = try Fixture(chunks: 2, seed: 4)
        var agg = try f.aggregation()
        var g = SplitMix64(seed: 9)
        var deliveries = f.tasks + f.tasks.prefix(5)          // at-least-once: some twice
        deliveries.shuffle(using: &g)
        var outputs: [OutputMessage] = []
        var duplicates = 0
        for t in deliveries {
            let (outcome, actions) = agg.receive(try f.partial(t), nowMs: t0 + 1_500)
            if outcome == .duplicate || outcome == .late { duplicates += 1 }
            outputs += emitted(actions)
        }
        #expect(duplicates == 5)
        #expect(outputs.map(\.resolution) == [1, 2, 3])
        #expect(outputs.last!.values.elements == f.fixedPoint())
    }

    @Test func deadlineBeforeAnyResolutionEmitsZerosWithAValidBoundOnce() throws {
        let f = try Fixture(seed: 5)
        var agg = try f.aggregation()
        // Only some row blocks of layer 0: no resolution yet.
        _ = agg.receive(try f.partial(f.tasks[0]), nowMs: t0 + 1_100)
        let actions = agg.deadlineFired(nowMs: t0 + 2_003)
        let out = emitted(actions)
        #expect(out.count == 1 && closes(actions) == 1)
        #expect(out[0].status == .deadline && out[0].resolution == 0 && out[0].of == 3)
        #expect(out[0].lateMs == 3)
        #expect(out[0].values.elements.allSatisfy { $0 == 0 })
        for (e, v) in f.float64().enumerated() { #expect(abs(v) <= out[0].bound.elements[e]) }
        #expect(agg.deadlineFired(nowMs: t0 + 2_010).isEmpty)     // exactly once
        let (late, more) = agg.receive(try f.partial(f.tasks[1]), nowMs: t0 + 2_020)
        #expect(late == .late && more.isEmpty && agg.latePartials == 1)
    }

    @Test func deadlineEmitsTheBestCompleteResolution() throws {
        let f = try Fixture(chunks: 3, seed: 6)
        var agg = try f.aggregation()
        var outputs: [OutputMessage] = []
        // Layers 0 and 1 complete (one task per layer and row block: 2 × 3), one task of layer 2.
        for t in f.tasks.prefix(7) { outputs += emitted(agg.receive(try f.partial(t), nowMs: t0 + 1_200).1) }
        #expect(outputs.map(\.resolution) == [1, 2])
        let out = emitted(agg.deadlineFired(nowMs: t0 + 2_001))
        #expect(out.count == 1)
        #expect(out[0].status == .deadline && out[0].resolution == 2)
        #expect(out[0].values == outputs[1].values)
        for (e, v) in f.float64().enumerated() { #expect(abs(v - out[0].values.elements[e]) <= out[0].bound.elements[e]) }
    }

    @Test func aTaskThatCannotBeComputedFailsTheJobOnceWithItsReason() throws {
        let f = try Fixture(seed: 8)
        var agg = try f.aggregation()
        _ = agg.receive(try f.partial(f.tasks[0]), nowMs: t0 + 1_100)
        let actions = agg.taskFailed(reason: "operand missing", nowMs: t0 + 1_200)
        let out = emitted(actions)
        #expect(out.count == 1 && closes(actions) == 1)
        #expect(out[0].status == .failed && out[0].reason == "operand missing" && out[0].of == 3)
        #expect(out[0].elapsedMs == 200)
        // Closed: neither a second failure, the deadline nor a late partial emits anything.
        #expect(agg.taskFailed(reason: "again", nowMs: t0 + 1_300).isEmpty)
        #expect(agg.deadlineFired(nowMs: t0 + 2_001).isEmpty)
        #expect(agg.receive(try f.partial(f.tasks[1]), nowMs: t0 + 1_400).1.isEmpty)
    }

    @Test func taskFailureNoticesAreBoundedAtTheEdge() throws {
        let notice = TaskFailure(job: "j-1", task: "j-1/L0/0", worker: "w", reason: String(repeating: "x", count: 5000))
        let decoded = try TaskFailure(decoding: notice.encode())
        #expect(decoded.job == "j-1" && decoded.task == "j-1/L0/0" && decoded.worker == "w")
        #expect(decoded.reason.count == WireLimits.maxReasonLength)
        var withBody = notice.encode()
        withBody.body = [1]
        #expect(throws: WireError.self) { try TaskFailure(decoding: withBody) }
        var badJob = notice.encode()
        badJob.headers[Header.job] = .string("no spaces allowed")
        #expect(throws: WireError.self) { try TaskFailure(decoding: badJob) }
    }

    @Test func partialsThatDoNotMatchThePlanAreInvalid() throws {
        let f = try Fixture(seed: 7)
        var agg = try f.aggregation()
        var wrongRows = try f.partial(f.tasks[0])
        wrongRows.rows = 1..<5
        wrongRows.task += "-x"
        if case .invalid = agg.receive(wrongRows, nowMs: t0 + 1_100).0 {} else { Issue.record("misaligned block accepted") }
        var wrongLayer = try f.partial(f.tasks[0])
        wrongLayer.layer = 2
        wrongLayer.task += "-y"
        if case .invalid = agg.receive(wrongLayer, nowMs: t0 + 1_100).0 {} else { Issue.record("wrong layer accepted") }
        // The genuine one is still accepted afterwards.
        #expect(agg.receive(try f.partial(f.tasks[0]), nowMs: t0 + 1_100).0 == .accepted)
    }

    @Test func oneShotJobsAssembleRowBlocksAndBoundTheirFloatError() throws {
        let f = try Fixture(rows: 9, columns: 20, mode: .oneShot, seed: 8)
        #expect(f.tasks.count == 3)
        var agg = try f.aggregation()
        var out: [OutputMessage] = []
        for t in f.tasks { out += emitted(agg.receive(try f.partial(t), nowMs: t0 + 1_300).1) }
        #expect(out.count == 1 && out[0].status == .complete && out[0].resolution == 1 && out[0].of == 1)
        for (e, v) in f.float64().enumerated() { #expect(abs(v - out[0].values.elements[e]) <= out[0].bound.elements[e]) }
    }

    @Test func wireRoundTripsKeepEveryField() throws {
        let f = try Fixture(vectors: 2, seed: 10)
        let t = f.tasks[3]
        #expect(try TaskMessage(decoding: t.encode(priority: 3, expiration: nil)) == t)
        let p = try f.partial(t)
        #expect(try PartialMessage(decoding: p.encode()) == p)
        let record = try OpenRecord(decoding: f.plan.open)
        #expect(record.job == f.job)
        var bad = f.plan.tasks[0]
        bad.body.removeLast()
        #expect(throws: WireError.self) { try TaskMessage(decoding: bad) }
        var noVersion = f.plan.tasks[0]
        noVersion.headers[Header.version] = nil
        #expect(throws: WireError.self) { try TaskMessage(decoding: noVersion) }
    }

    @Test func hostileMessagesAreRefusedNotCrashedOn() throws {
        let f = try Fixture(seed: 12)
        // Sizes whose products overflow: refused by the decoders.
        var partial = try f.partial(f.tasks[0]).encode()
        partial.headers[Header.rowEnd] = .int(1 << 30)
        partial.headers[Header.vectors] = .int(1 << 30)
        #expect(throws: WireError.self) { try PartialMessage(decoding: partial) }
        var task = f.plan.tasks[0]
        task.headers[Header.vectors] = .int(1 << 30)
        task.headers[Header.columns] = .int(1 << 30)
        #expect(throws: WireError.self) { try TaskMessage(decoding: task) }
        // A job with absurd times or row blocks: refused by validation.
        var job = f.job
        job.deadline = Deadline(epochMs: .max)
        #expect(throws: WireError.self) { try job.validate() }
        job = f.job
        job.rowBlock = .max
        #expect(throws: WireError.self) { try job.validate() }
        // A partial whose values exceed what the operands allow (e.g. Int64.min) is invalid,
        // and the genuine one is still accepted afterwards.
        var agg = try f.aggregation()
        var corrupt = try f.partial(f.tasks[0])
        corrupt.exact[0] = .min
        if case .invalid = agg.receive(corrupt, nowMs: t0 + 1_100).0 {} else { Issue.record("corrupt values accepted") }
        #expect(agg.receive(try f.partial(f.tasks[0]), nowMs: t0 + 1_100).0 == .accepted)
    }
}
