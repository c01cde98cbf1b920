// Distributed inference end to end, on every transport: the unit tests run these on the
// in-memory broker, the integration tests on RabbitMQ. References are independent of the
// pipeline: logits from the incremental evaluator (METHOD.md §5, checked equal to direct
// evaluation by the refinement tests) and exit decisions computed here by hand.
import Foundation
import SRCore
import SRNeural
import SRProtocol
import SRSubmission
import SRStore
import SRTraining
import SRTransport

/// A small random MLP registered in the store, random images, and every sample's exact logits
/// at every resolution.
struct InferenceFixture {
    let model: Model
    let digest: String
    let images: Matrix<Double>
    let resolutions: Int

    init(store: OperandStore, samples: Int, resolutions: Int = 4, seed: UInt64) throws {
        var g = SplitMix64(seed: seed)
        var arch = ModelArchitectures.mlp(input: 16, hidden: [12], classes: 4, resolutions: resolutions, bitsPerUpgrade: 2)
        arch.manifest.partitions["input"] = PartitionVector.evenlySpaced(top: 0, chunks: resolutions, bits: 2)
        var tensors: [String: Tensor] = [:]
        for (name, shape) in arch.tensorShapes {
            tensors[name] = Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float(Double.random(in: -1..<1, using: &g)) })
        }
        model = Model(manifest: arch.manifest, tensors: tensors)
        digest = try store.register(model: model, name: nil)
        images = Matrix(rows: samples, columns: 16, elements: (0..<(samples * 16)).map { _ in Double.random(in: 0..<1, using: &g) })
        self.resolutions = resolutions
    }

    /// logits[r − 1][i]: sample i at resolution r, from the incremental evaluator.
    func referenceLogits() throws -> [[[Double]]] {
        let partition = try PartitionVector(model.manifest.partitions["input"]!)
        let network = try QuantizedNetwork(manifest: model.manifest, tensors: model.tensors, inputPartition: partition)
        let inputs = try (0..<images.rows).map { i in
            try QuantizedTensor(values: Array(images.elements[(i * 16)..<((i + 1) * 16)]), shape: [16], partition: partition, name: "x\(i)")
        }
        var inc = try IncrementalEvaluator(network: network, inputs: inputs)
        return try (1...resolutions).map { _ in try inc.upgrade(Array(0..<images.rows)).map(\.values) }
    }

    /// Publishes, as a consumer would, the reference logits of `samples` at resolution r.
    func answer(_ job: InferenceJob, resolution r: Int, samples: [Int], reference: [[[Double]]],
                on producer: any Transport) async throws {
        let task = InferenceTask(job: job, resolution: r, indices: samples)
        let p = InferencePartial(for: task, logits: samples.map { reference[r - 1][$0] }, computeMicroseconds: 0, worker: "test")
        try await producer.publish(p.encode(), Topology.partialRoute)
    }

    func request(id: String, rule: String, deadline: Duration, block: Int) throws -> InferenceRequest {
        InferenceRequest(model: digest, network: model, images: images, rule: try ExitRule(parsing: rule),
                         deadline: deadline, blockSize: block, id: id)
    }
}

extension PartitionVector {
    /// [top, top − bits, …]: `chunks` chunks of `bits` bits below 2^top.
    static func evenlySpaced(top: Int, chunks: Int, bits: Int) -> [Int] { (0...chunks).map { top - $0 * bits } }
}

/// top-1 minus top-2, and the first index of the largest value — written out here, not taken
/// from the library's exit rules.
func handMargin(_ v: [Double]) -> Double { let s = v.sorted(by: >); return s[0] - s[1] }
func handArgmax(_ v: [Double]) -> Int { var b = 0; for k in v.indices where v[k] > v[b] { b = k }; return b }

/// Inference outputs of `job` until its final one, in arrival order.
func inferenceOutputs(until job: String, from watcher: OutputWatcher, limit: Duration = .seconds(120)) async throws -> [InferenceOutput] {
    try await within(limit, "the final answer of \(job)") {
        var seen: [InferenceOutput] = []
        while let o = try await watcher.nextInference(within: limit) {
            guard o.job == job else { continue }
            seen.append(o)
            if o.status != .partial { break }
        }
        return seen
    }
}

public enum InferenceScenarios {
    public static let all: [PipelineScenario] = [
        PipelineScenario(name: "inference: each sample stops where the rule says, with exact logits", run: exits),
        PipelineScenario(name: "inference: the deadline answers every sample once with its best resolution", run: deadline),
        PipelineScenario(name: "inference: an aggregator dying mid-job loses nothing after a restart", run: aggregatorRestarts),
        PipelineScenario(name: "inference: an aggregator restarted after the deadline answers with what was computed",
                         run: restartAfterDeadline),
        PipelineScenario(name: "inference: inputs of the other job kind under a job's id are dead-lettered, the job unharmed",
                         run: kindCollision),
    ]

    static func exits(_ env: PipelineEnvironment) async throws {
        let fixture = try InferenceFixture(store: env.store, samples: 120, seed: 61)
        let reference = try fixture.referenceLogits()
        let R = fixture.resolutions
        // A threshold that stops about half the samples at r = 2: exits spread over resolutions.
        let t = reference[1].map(handMargin).sorted()[60]
        let expectedExit = (0..<120).map { i in (1...R).first { r in r == R || handMargin(reference[r - 1][i]) >= t }! }
        try require(Set(expectedExit).count >= 3, "the fixture exits at too few resolutions to test anything: \(Set(expectedExit))")
        let (roles, _, _) = try await startRoles(env, consumers: 2)
        let producer = try await env.makeTransport()
        let id = PipelineScenarios.unique("inf")
        let watcher = try await OutputWatcher.watch([id], on: producer)
        _ = try await InferenceSubmitter(transport: producer, store: env.store)
            .submit(fixture.request(id: id, rule: "margin:\(t)", deadline: .seconds(600), block: 16))
        let seen = try await inferenceOutputs(until: id, from: watcher)
        await roles.stop()
        await producer.close()
        let final = seen.last!
        try require(final.status == .complete, "status \(final.status), expected complete")
        try require(final.answers.map(\.sample) == Array(0..<120), "the final answer does not list every sample once")
        for a in final.answers {
            let r = expectedExit[a.sample]
            try require(a.resolution == r && a.decided, "sample \(a.sample) stopped at \(a.resolution) (decided \(a.decided)); expected \(r)")
            try require(a.logits == reference[r - 1][a.sample], "sample \(a.sample): logits ≠ the incremental evaluator's at r = \(r)")
            try require(a.label == handArgmax(a.logits) && a.margin == handMargin(a.logits), "sample \(a.sample): label or margin wrong")
        }
        try require(final.skipped == expectedExit.reduce(0) { $0 + R - $1 }, "skipped \(final.skipped)")
        // Refinements: each sample appears once per resolution it reached, 1, 2, … in order.
        var reached = Array(repeating: 0, count: 120)
        for o in seen.dropLast() {
            for a in o.answers {
                try require(a.resolution == reached[a.sample] + 1, "sample \(a.sample) refined to \(a.resolution) after \(reached[a.sample])")
                reached[a.sample] = a.resolution
            }
        }
        try require(reached == expectedExit, "the refinements did not reach every sample's exit resolution")
    }

    static func deadline(_ env: PipelineEnvironment) async throws {
        let fixture = try InferenceFixture(store: env.store, samples: 30, seed: 62)
        let reference = try fixture.referenceLogits()
        // Only an aggregator: this test answers a few tasks itself (with reference logits), as a
        // pool too slow for the deadline would; the deadline must answer everything else too.
        let (aggRoles, _, _) = try await startRoles(env, consumers: 0)
        let producer = try await env.makeTransport()
        let id = PipelineScenarios.unique("idl")
        let watcher = try await OutputWatcher.watch([id], on: producer)
        // A far deadline the aggregator's clock never reaches here; the test fires it (as
        // `srproduce deadline` does) once the answers it expects are in, however slow the machine.
        let job = try await InferenceSubmitter(transport: producer, store: env.store)
            .submit(fixture.request(id: id, rule: "none", deadline: .seconds(600), block: 10))
        try await fixture.answer(job, resolution: 1, samples: Array(0..<10), reference: reference, on: producer)
        let first = try await within(.seconds(120), "the first refinement") { try await watcher.nextInference(within: .seconds(120)) }
        try require(first?.answers.map(\.resolution) == Array(repeating: 1, count: 10), "expected samples 0…9 at r = 1 first")
        try await fixture.answer(job, resolution: 2, samples: Array(0..<10).filter { $0 % 2 == 0 }, reference: reference, on: producer)
        let second = try await within(.seconds(120), "the second refinement") { try await watcher.nextInference(within: .seconds(120)) }
        try require(second?.answers.map(\.sample) == [0, 2, 4, 6, 8], "expected samples 0, 2, …, 8 refined to r = 2")
        try await JobSubmitter(transport: producer).fireDeadline(job: id)
        let seen = try await inferenceOutputs(until: id, from: watcher)
        let final = seen.last!
        try require(final.status == .deadline, "status \(final.status), expected deadline")
        try require(final.answers.count == 30, "\(final.answers.count) answers for 30 samples")
        for a in final.answers {
            let r = a.sample >= 10 ? 0 : (a.sample % 2 == 0 ? 2 : 1)
            try require(a.resolution == r && !a.decided, "sample \(a.sample) at \(a.resolution) (decided \(a.decided)); expected \(r), undecided")
            if r == 0 {
                try require(a.label == -1 && a.logits.isEmpty, "sample \(a.sample) has an answer it never got")
            } else {
                try require(a.logits == reference[r - 1][a.sample] && a.label == handArgmax(a.logits), "sample \(a.sample): wrong answer")
            }
        }
        // Exactly once: nothing more for this job within 500 ms (bounded absence check).
        let extra = try? await within(.milliseconds(500), "no second final") { try await watcher.nextInference(within: .milliseconds(500)) }
        try require(extra == nil || extra?.job != id, "a second answer for \(id) after its final")
        await aggRoles.stop()
        await producer.close()
    }

    static func aggregatorRestarts(_ env: PipelineEnvironment) async throws {
        let fixture = try InferenceFixture(store: env.store, samples: 40, resolutions: 3, seed: 63)
        let reference = try fixture.referenceLogits()
        let producer = try await env.makeTransport()
        let id = PipelineScenarios.unique("iag")
        let watcher = try await OutputWatcher.watch([id], on: producer)
        // No consumers at first: this test answers resolution 1 of ten samples itself, so the
        // job is certainly open when its aggregator dies (inputs unacknowledged).
        let (first, _, _) = try await startRoles(env, consumers: 0)
        let job = try await InferenceSubmitter(transport: producer, store: env.store)
            .submit(fixture.request(id: id, rule: "none", deadline: .seconds(600), block: 10))
        try await fixture.answer(job, resolution: 1, samples: Array(0..<10), reference: reference, on: producer)
        let r1 = try await within(.seconds(120), "a first refinement") { try await watcher.nextInference(within: .seconds(120)) }
        try require(r1?.status == .partial && r1?.answers.count == 10, "expected the refinement of samples 0…9")
        await first.stop()
        let (second, aggregator, _) = try await startRoles(env, consumers: 1)
        let seen = try await inferenceOutputs(until: id, from: watcher)
        await second.stop()
        await producer.close()
        try require(aggregator?.snapshot.opened == 1, "the second aggregator did not recover the job")
        let final = seen.last!
        try require(final.status == .complete, "status \(final.status), expected complete after the restart")
        try require(final.answers.map(\.sample) == Array(0..<40), "the final does not answer every sample once")
        for a in final.answers {
            try require(a.resolution == 3 && a.logits == reference[2][a.sample], "sample \(a.sample) wrong after the restart")
        }
    }

    static func restartAfterDeadline(_ env: PipelineEnvironment) async throws {
        let fixture = try InferenceFixture(store: env.store, samples: 20, seed: 64)
        let reference = try fixture.referenceLogits()
        let producer = try await env.makeTransport()
        let id = PipelineScenarios.unique("ird")
        let watcher = try await OutputWatcher.watch([id], on: producer)
        let (first, _, _) = try await startRoles(env, consumers: 0)
        let job = try await InferenceSubmitter(transport: producer, store: env.store)
            .submit(fixture.request(id: id, rule: "none", deadline: .seconds(600), block: 10))
        try await fixture.answer(job, resolution: 1, samples: Array(0..<10), reference: reference, on: producer)
        let r1 = try await within(.seconds(120), "the first refinement") { try await watcher.nextInference(within: .seconds(120)) }
        try require(r1?.answers.count == 10, "expected the refinement of samples 0…9")
        // The aggregator dies before the deadline, which fires (`srproduce deadline`) while
        // none runs; the next one must answer with what was computed.
        await first.stop()
        try await JobSubmitter(transport: producer).fireDeadline(job: id)
        let (second, _, _) = try await startRoles(env, consumers: 0)
        let final = try await inferenceOutputs(until: id, from: watcher).last!
        await second.stop()
        await producer.close()
        try require(final.status == .deadline, "status \(final.status), expected deadline")
        try require(final.answers.map(\.sample) == Array(0..<20), "the final does not answer every sample once")
        for a in final.answers {
            let r = a.sample < 10 ? 1 : 0
            try require(a.resolution == r, "sample \(a.sample) at \(a.resolution) after the restart; expected \(r) (what was computed)")
            if r == 1 { try require(a.logits == reference[0][a.sample], "sample \(a.sample): wrong logits") }
        }
    }

    static func kindCollision(_ env: PipelineEnvironment) async throws {
        let fixture = try InferenceFixture(store: env.store, samples: 8, seed: 65)
        let reference = try fixture.referenceLogits()
        let (roles, _, _) = try await startRoles(env, consumers: 0)
        let producer = try await env.makeTransport()
        try await Topology.declare(on: producer)
        let dead = try await producer.subscribe(queue: Topology.deadQueue, prefetch: 0)
        let id = PipelineScenarios.unique("ikc")
        let watcher = try await OutputWatcher.watch([id], on: producer)
        // margin ≥ 0 holds for every sample: all are decided at resolution 1.
        let job = try await InferenceSubmitter(transport: producer, store: env.store)
            .submit(fixture.request(id: id, rule: "margin:0", deadline: .seconds(600), block: 8))
        // A mat-vec open record and a mat-vec partial that claim the inference job's id.
        let other = try ScenarioJob(id: id, chunks: 2, seed: 42)
        let plan = try JobSubmitter(transport: producer).plan(other.request)
        try await producer.publish(plan.open, Topology.openRoute)
        let strayTask = try TaskMessage(decoding: plan.tasks[0])
        let stray = PartialMessage(for: strayTask, computeMicroseconds: 0, worker: "stray",
                                   exact: Array(repeating: 0, count: strayTask.rows.count * strayTask.vectors), values: [])
        try await producer.publish(stray.encode(), Topology.partialRoute)
        let reasons = try await within(.seconds(120), "two dead letters") {
            var found: [String] = []
            for try await d in dead.deliveries {
                try await dead.ack(d)
                guard d.message.headers[Header.job]?.stringValue == id else { continue }
                found.append(d.message.headers[Header.deadReason]?.stringValue ?? "")
                if found.count == 2 { break }
            }
            return found
        }
        await dead.cancel()
        try require(reasons.contains { $0.contains("already an open inference job") }, "reasons \(reasons)")
        try require(reasons.contains { $0.contains("mat-vec partial for inference job") }, "reasons \(reasons)")
        // The inference job itself still completes with the right answers.
        try await fixture.answer(job, resolution: 1, samples: Array(0..<8), reference: reference, on: producer)
        let final = try await inferenceOutputs(until: id, from: watcher).last!
        await roles.stop()
        await producer.close()
        try require(final.status == .complete && final.answers.allSatisfy { $0.resolution == 1 && $0.decided },
                    "the inference job did not complete at resolution 1: \(final.status)")
    }
}
