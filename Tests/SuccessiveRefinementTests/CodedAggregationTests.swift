// Coded jobs at the aggregator, without a broker: any K of a layer's N coded partials complete
// it, the final equals the fixed-point product bit for bit, and a parity partial that decodes
// to something other than A·x is refused. Partials are computed here with plain Int64 loops
// (a parity partial as the weighted sum of the row blocks' products), not with the encoder.
import Testing
@testable import SRAggregation
@testable import SRCoding
@testable import SRCore
@testable import SRProtocol
@testable import SRTransport

@Suite struct CodedAggregationTests {
    struct Fixture {
        let a: Matrix<Double>
        let x: Matrix<Double>
        let p: PartitionVector
        let job: MatVecJob
        let plan: JobPlan
        let tasks: [TaskMessage]

        init(rows: Int = 10, columns: Int = 12, rowBlock: Int = 4, redundancy: Double = 1.5, codedLayers: Int? = nil,
             seed: UInt64 = 1) throws {
            var g = SplitMix64(seed: seed)
            a = DyadicMatrix(rows: rows, columns: columns, totalBits: 16, fractionBits: 12, using: &g).matrix
            x = DyadicMatrix(rows: columns, columns: 1, totalBits: 16, fractionBits: 12, using: &g).matrix
            p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: 2, bits: 5)
            let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: 2, bits: 5)
            let schedule = try LayerSchedule.bySignificance(chunksA: 2, chunksX: 2)
            var job = MatVecJob(id: "coded-\(seed)", mode: .layered, matrix: String(repeating: "a", count: 64), rows: rows,
                                columns: columns, vectors: 1, partitionA: p.exponents, partitionX: q.exponents,
                                layers: schedule.layers.map { $0.map { [$0.a, $0.x] } }, rowBlock: rowBlock,
                                createdMs: t0 + 1_000, deadline: Deadline(epochMs: t0 + 2_000))
            job.codedTasks = try MiniJobCode(redundancy: redundancy, blocks: job.blockCount).n
            job.codedLayers = codedLayers
            self.job = job
            plan = try JobPlanner.plan(job, statisticsA: ChunkedOperand(decomposing: a, partition: p).statistics, vectors: x,
                                       nowMs: t0 + 1_000)
            tasks = try plan.tasks.map { try TaskMessage(decoding: $0) }
        }

        /// Row `row` of A's chunk plane `i` times x's chunk, by plain loops (0 beyond A's rows).
        func rowProduct(_ row: Int, _ pair: ChunkPair, _ xChunk: [Int64]) throws -> Int64 {
            guard row < a.rows else { return 0 }
            var s: Int64 = 0
            for c in 0..<a.columns { s += try p.chunks(of: a[row, c])[pair.a] * xChunk[c] }
            return s
        }

        /// What an honest consumer returns: for a parity task, row t is Σ_b g_{i,b} · (row b·r + t).
        func partial(_ t: TaskMessage) throws -> PartialMessage {
            let code = job.code
            var exact: [Int64] = []
            for (k, pair) in t.pairs.enumerated() {
                let xChunk = Array(t.vectorChunk(k))
                for (i, row) in t.rows.enumerated() {
                    if t.isParity {
                        var s: Int64 = 0
                        for b in 0..<code.k { s += code.coefficient(t.codedBlock, b) * (try rowProduct(b * job.rowBlock + i, pair, xChunk)) }
                        exact.append(s)
                    } else {
                        exact.append(try rowProduct(row, pair, xChunk))
                    }
                }
            }
            return PartialMessage(for: t, computeMicroseconds: 1, worker: "test", exact: exact, values: [])
        }

        func fixedPoint() -> [Double] {
            let pn = job.partitionA.last!, qn = job.partitionX.last!
            let at = a.elements.map { truncatedUnits($0, finestExponent: pn) }
            let xt = x.elements.map { truncatedUnits($0, finestExponent: qn) }
            return exactIntegerProduct(at, xt, rows: a.rows, inner: a.columns, count: 1).map { Double($0) * pow2(pn + qn) }
        }

        func verifier() throws -> PartialVerifier {
            var g = SplitMix64(seed: 77)
            let planes = try ChunkedOperand(decomposing: a, partition: p).planes
            let q = try PartitionVector(job.partitionX)
            return PartialVerifier(job: job, checksums: RowChecksums.layered(job: job, a: planes, using: &g), x: x,
                                   xPlanes: try ChunkedOperand.vectors(x, partition: q).planes)
        }
    }

    @Test func theJobStatesItsCode() throws {
        let f = try Fixture()
        #expect(f.job.blockCount == 3)
        #expect(f.job.code == (try MiniJobCode(k: 3, n: 5)))
        #expect(f.tasks.count == 5 * f.job.layers.count)
        #expect(f.tasks.filter(\.isParity).allSatisfy { $0.rows == 0..<4 && $0.task.contains("/c") })
        // The code survives the open record.
        #expect(try OpenRecord(decoding: f.plan.open).job.codedTasks == 5)
    }

    @Test func anyKOfNPerLayerGiveTheExactFinal() throws {
        let f = try Fixture()
        let record = try OpenRecord(decoding: f.plan.open)
        // Every choice of 3 of the 5 coded blocks, the same in every layer.
        for dropped in [[0, 1], [0, 2], [1, 2], [3, 4], [0, 3], [1, 4], [2, 3]] {
            var agg = try JobAggregation(record, verifier: try f.verifier())
            var outputs: [OutputMessage] = []
            for t in f.tasks where !dropped.contains(t.codedBlock) {
                let (outcome, actions) = agg.receive(try f.partial(t), nowMs: t0 + 1_100)
                #expect(outcome == .accepted || outcome == .duplicate, "dropping \(dropped): \(outcome)")
                outputs += actions.compactMap { if case .emit(let o) = $0 { o } else { nil } }
            }
            #expect(outputs.map(\.resolution) == [1, 2, 3], "dropping \(dropped)")
            #expect(outputs.last?.status == .complete)
            #expect(outputs.last?.values.elements == f.fixedPoint(), "dropping \(dropped)")
        }
    }

    @Test func aLayerCompletesAtItsKthResultAndLaterOnesChangeNothing() throws {
        let f = try Fixture()
        var agg = try JobAggregation(try OpenRecord(decoding: f.plan.open))
        let layer0 = f.tasks.filter { $0.layer == 0 }
        var emitted = 0
        for (i, t) in [layer0[4], layer0[0], layer0[3], layer0[1], layer0[2]].enumerated() {
            let (outcome, actions) = agg.receive(try f.partial(t), nowMs: t0 + 1_100)
            emitted += actions.filter { if case .emit = $0 { true } else { false } }.count
            #expect(emitted == (i >= 2 ? 1 : 0))
            #expect(outcome == (i < 3 ? .accepted : .duplicate))
        }
    }

    @Test func aForgedParityPartialIsRefusedAndThePlainBlocksStillCompleteTheJob() throws {
        let f = try Fixture()
        var agg = try JobAggregation(try OpenRecord(decoding: f.plan.open), verifier: try f.verifier())
        let layer0 = f.tasks.filter { $0.layer == 0 }
        var forged = try f.partial(layer0[3])
        forged.exact[1] += 1
        _ = agg.receive(try f.partial(layer0[0]), nowMs: t0 + 1_100)
        _ = agg.receive(try f.partial(layer0[1]), nowMs: t0 + 1_100)
        let (outcome, actions) = agg.receive(forged, nowMs: t0 + 1_100)
        guard case .forged(let why) = outcome else { Issue.record("forged parity taken: \(outcome)"); return }
        #expect(why.contains("checksum"))
        #expect(actions.isEmpty)
        #expect(agg.forgedPartials == 1)
        var outputs: [OutputMessage] = []
        for t in f.tasks where t.codedBlock < 3 {
            outputs += agg.receive(try f.partial(t), nowMs: t0 + 1_200).1.compactMap { if case .emit(let o) = $0 { o } else { nil } }
        }
        #expect(outputs.last?.status == .complete)
        #expect(outputs.last?.values.elements == f.fixedPoint())
    }

    /// Layer 1 has two pairs. The forged parity arrives first; the decode that uses it fails
    /// when the third result (an honest row block) arrives: that block is accepted, the parity
    /// dropped, and the last row block completes the layer exactly — also when only one of the
    /// two pairs was forged (the other then completes with the parity, the first without).
    @Test(arguments: [[0, 4], [0]])
    func aForgedParityThatArrivedFirstDoesNotCostAnHonestPartialOrALayer(forgedAt: [Int]) throws {
        let f = try Fixture()
        var agg = try JobAggregation(try OpenRecord(decoding: f.plan.open), verifier: try f.verifier())
        #expect(f.job.layers[1].count == 2)
        var outputs: [OutputMessage] = []
        func take(_ p: PartialMessage) -> JobAggregation.PartialOutcome {
            let (outcome, actions) = agg.receive(p, nowMs: t0 + 1_100)
            outputs += actions.compactMap { if case .emit(let o) = $0 { o } else { nil } }
            return outcome
        }
        for t in f.tasks where t.layer == 0 && !t.isParity { #expect(take(try f.partial(t)) == .accepted) }
        let layer1 = f.tasks.filter { $0.layer == 1 }
        var forged = try f.partial(layer1.first { $0.codedBlock == 3 }!)
        for i in forgedAt { forged.exact[i] += 1 }  // row 0 of pair 1 (index 0), of pair 2 (index 4)
        #expect(take(forged) == .accepted)          // nothing to check it against yet
        #expect(take(try f.partial(layer1[0])) == .accepted)
        #expect(take(try f.partial(layer1[1])) == .accepted, "an honest row block was refused")
        #expect(agg.forgedPartials == forgedAt.count && agg.refusedParity.count == forgedAt.count)
        #expect(take(try f.partial(layer1[2])) == .accepted)
        for t in f.tasks where t.layer == 2 && !t.isParity { _ = take(try f.partial(t)) }
        #expect(outputs.map(\.resolution) == [1, 2, 3])
        #expect(outputs.last?.status == .complete)
        #expect(outputs.last?.values.elements == f.fixedPoint())
    }

    @Test func hostileCodesAreRefusedAtDecode() throws {
        let f = try Fixture()
        var oneShotCoded = f.plan.tasks[0]
        oneShotCoded.headers[Header.mode] = .string("one-shot")
        #expect(throws: WireError.self) { try TaskMessage(decoding: oneShotCoded) }
        var blockWithoutCode = f.plan.tasks[0]
        blockWithoutCode.headers[Header.code] = nil
        #expect(throws: WireError.self) { try TaskMessage(decoding: blockWithoutCode) }
    }

    @Test func codingOnlyTheFirstLayerCodesOnlyItsTasks() throws {
        let f = try Fixture(codedLayers: 1)
        #expect(f.tasks.filter { $0.layer == 0 }.count == 5 && f.tasks.filter { $0.layer > 0 }.count == 3 * 2)
        #expect(f.tasks.filter { $0.layer > 0 }.allSatisfy { $0.code == nil && !$0.isParity })
        #expect(try OpenRecord(decoding: f.plan.open).job.codedLayers == 1)
        var agg = try JobAggregation(try OpenRecord(decoding: f.plan.open), verifier: try f.verifier())
        var outputs: [OutputMessage] = []
        var notices: [Int] = []
        for t in f.tasks where !(t.layer == 0 && t.codedBlock == 0) {   // layer 0 decoded from 1, 2 and a parity
            let (outcome, actions) = agg.receive(try f.partial(t), nowMs: t0 + 1_100)
            #expect(outcome == .accepted || outcome == .duplicate)
            for a in actions {
                if case .emit(let o) = a { outputs.append(o) }
                if case .layerDone(let l) = a { notices.append(l) }
            }
        }
        #expect(notices == [0])
        #expect(outputs.map(\.resolution) == [1, 2, 3])
        #expect(outputs.last?.values.elements == f.fixedPoint())
        var bad = f.job
        bad.codedLayers = 4
        #expect(throws: WireError.self) { try bad.validate() }
    }

    @Test func codedJobsAreRefusedWhereTheyCannotWork() throws {
        let f = try Fixture()
        var oneShot = f.job
        oneShot.mode = .oneShot
        #expect(throws: WireError.self) { try oneShot.validate() }
        var inline = f.job
        inline.matrix = "inline"
        #expect(throws: WireError.self) { try inline.validate() }
        var tooMany = f.job
        tooMany.codedTasks = 20
        #expect(throws: WireError.self) { try tooMany.validate() }
    }
}
