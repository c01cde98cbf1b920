// The aggregator's inference jobs: per-sample answers in, the exit rule applied by the pure
// state machine (InferenceAggregation), next-resolution tasks published only for undecided
// samples, per-sample refinements out, and every sample's best answer at the deadline.
import SRAggregation
import SRCore
import SRProtocol
import SRTransport
import Logging

extension AggregatorService {
    /// An open inference job: its spec (to publish tasks) and its state machine.
    struct InferenceJobState: Sendable {
        var job: InferenceJob
        var aggregation: InferenceAggregation
    }

    /// A job's final output, kept until the broker confirms it (retried on failure).
    enum FinalOutput: Sendable {
        case matVec(OutputMessage)
        case inference(InferenceOutput)

        func enqueue(with core: Core) {
            switch self {
            case .matVec(let o): core.emit(o)
            case .inference(let o): core.emit(o)
            }
        }
    }
}

extension AggregatorService.Core {
    mutating func openInference(_ d: Delivery, _ sub: Subscription, _ now: Int64) async {
        let record: InferenceOpen
        let rule: ExitRule
        do {
            record = try InferenceOpen(decoding: d.message)
            rule = try record.job.rule()
        } catch {
            return await deadLetter(d, sub, Topology.jobsQueue, "invalid inference open record: \(error)")
        }
        let job = record.job
        if closed.contains(job.id) {
            try? await sub.ack(d)
            return
        }
        if jobs[job.id] != nil {
            return await deadLetter(d, sub, Topology.jobsQueue, "job id \(job.id) is already an open mat-vec job; ids must be unique")
        }
        held[job.id, default: []].append((d.forAck, sub))
        // A redelivered copy (after a reconnect) is held too, so the job stays recoverable.
        guard inferences[job.id] == nil else { return }
        // Mat-vec partials parked under this id are not this job's: held, never replayed.
        waitingPartials[job.id] = nil
        // Resolution 1 of every sample was published by the producer with the open record.
        inferences[job.id] = AggregatorService.InferenceJobState(
            job: job, aggregation: InferenceAggregation(job: job.id, sampleCount: job.samples, resolutions: job.resolutions,
                                                        rule: rule, deadlineMs: job.deadlineMs))
        noteReplay(job.id, d, now)
        service.counters.withLock { $0.opened += 1 }
        logger.info("inference job opened", metadata: [
            "job.id": "\(job.id)", "samples": "\(job.samples)", "resolutions": "\(job.resolutions)",
            "exit": "\(job.exitRule)", "deadline_ms": "\(job.relativeDeadlineMs)",
        ])
        for (p, _) in waitingInferencePartials.removeValue(forKey: job.id) ?? [] {
            await receiveInference(p, now)
        }
        if waitingDeadlines.removeValue(forKey: job.id) != nil {
            if inReplay(job.id, now) {
                deferredDeadlines.insert(job.id)
            } else {
                await applyInference(job.id, now) { $0.deadlineFired(nowMs: now) }
            }
        }
    }

    mutating func inferencePartial(_ d: Delivery, _ sub: Subscription, _ now: Int64) async {
        let p: InferencePartial
        do { p = try InferencePartial(decoding: d.message) } catch {
            return await deadLetter(d, sub, Topology.partialsQueue, "invalid inference partial: \(error)")
        }
        if closed.contains(p.job) {
            service.counters.withLock { $0.latePartials += 1 }
            try? await sub.ack(d)
            return
        }
        if jobs[p.job] != nil {
            return await deadLetter(d, sub, Topology.partialsQueue, "an inference partial for mat-vec job \(p.job)")
        }
        guard let state = inferences[p.job] else {
            // Its open record has not arrived yet (a different queue): keep it, held.
            waitingInferencePartials[p.job, default: []].append((p, now))
            held[p.job, default: []].append((d.forAck, sub))
            return
        }
        if let why = Self.mismatch(p, state.job) {
            return await deadLetter(d, sub, Topology.partialsQueue, why)
        }
        // Held until the job closes, duplicates included: after a reconnect a redelivered copy
        // may be the only live one.
        held[p.job, default: []].append((d.forAck, sub))
        await receiveInference(p, now)
    }

    /// Why a partial cannot belong to `job`, or nil.
    static func mismatch(_ p: InferencePartial, _ job: InferenceJob) -> String? {
        if p.classes != job.classes { return "job \(job.id) has \(job.classes) classes; the partial has \(p.classes) logits per sample" }
        if p.resolution < 1 || p.resolution > job.resolutions { return "resolution \(p.resolution) is outside 1...\(job.resolutions)" }
        if let bad = p.indices.first(where: { $0 >= job.samples }) { return "sample \(bad) is outside the job's \(job.samples) samples" }
        return nil
    }

    mutating func receiveInference(_ p: InferencePartial, _ now: Int64) async {
        if let state = inferences[p.job], let why = Self.mismatch(p, state.job) {
            logger.warning("ignoring an inference partial", metadata: ["job.id": "\(p.job)", "reason": "\(why)"])
            return
        }
        var refused: (any Error)?
        await applyInference(p.job, now) { agg in
            do { return try agg.receive(resolution: p.resolution, indices: p.indices, logits: p.logits) } catch {
                refused = error
                return []
            }
        }
        if let refused { logger.warning("ignoring an inference partial", metadata: ["job.id": "\(p.job)", "reason": "\(refused)"]) }
    }

    /// Runs `body` on inference job `id`'s state machine and carries out its actions.
    mutating func applyInference(_ id: String, _ now: Int64,
                                 _ body: (inout InferenceAggregation) -> [InferenceAggregation.Action]) async {
        guard var state = inferences[id] else { return }
        let actions = body(&state.aggregation)
        inferences[id] = state
        for action in actions {
            switch action {
            case .evaluate(let r, let samples):
                await publishTasks(state.job, resolution: r, samples: samples, now)
            case .refined(let samples):
                emit(Self.output(state, .partial, samples, now))
            case .finish(let status):
                // The job closes once this is confirmed (`Event.finalPublished`).
                emit(Self.output(state, status, Array(0..<state.job.samples), now))
            }
        }
    }

    /// Tasks for `samples` at resolution r, `blockSize` samples each, expiring at the deadline.
    mutating func publishTasks(_ job: InferenceJob, resolution r: Int, samples: [Int], _ now: Int64) async {
        let remaining = job.deadlineMs - now
        guard remaining > 0 else { return }
        let sorted = samples.sorted()
        let tasks = stride(from: 0, to: sorted.count, by: job.blockSize).map { start in
            InferenceTask(job: job, resolution: r, indices: Array(sorted[start..<min(sorted.count, start + job.blockSize)]))
                .encode(expiration: .milliseconds(remaining))
        }
        // Behind earlier unsent tasks: keep the order (resolution priority is per message).
        guard unsentTasks[job.id] == nil else { return unsentTasks[job.id, default: []] += tasks }
        do {
            // One batch, confirms awaited together: a resolution's tasks cost one round trip.
            try await service.transport.publish(tasks.map { Publication($0, Topology.taskRoute) })
        } catch {
            // Some may have gone out: sending them again is harmless (partials are de-duplicated).
            logger.error("could not publish inference tasks; will retry", metadata: ["job.id": "\(job.id)", "error": "\(error)"])
            unsentTasks[job.id] = tasks
        }
    }

    /// Retries tasks whose publish failed, in order, while their job is open.
    mutating func retryUnsentTasks() async {
        for (id, tasks) in unsentTasks {
            var left = tasks[...]
            while let t = left.first, await send(t, job: id) { left = left.dropFirst() }
            unsentTasks[id] = left.isEmpty ? nil : Array(left)
        }
    }

    func send(_ task: Message, job: String) async -> Bool {
        do {
            try await service.transport.publish(task, Topology.taskRoute)
            return true
        } catch {
            logger.error("could not publish an inference task; will retry", metadata: ["job.id": "\(job)", "error": "\(error)"])
            return false
        }
    }

    static func output(_ state: AggregatorService.InferenceJobState, _ status: OutputStatus, _ samples: [Int],
                       _ now: Int64) -> InferenceOutput {
        let agg = state.aggregation
        let answers = samples.map { s in
            let sample = agg.samples[s]
            return InferenceOutput.Answer(sample: s, label: sample.label, resolution: sample.resolution,
                                          margin: sample.margin, decided: sample.decided, logits: sample.logits)
        }
        return InferenceOutput(job: state.job.id, status: status, resolutions: state.job.resolutions,
                               elapsedMs: Double(now - state.job.createdMs),
                               lateMs: status == .deadline ? Double(now - state.job.deadlineMs) : nil,
                               skipped: agg.skipped, answers: answers)
    }

    /// Queues the output for the publisher task, which logs one line once it is confirmed.
    func emit(_ output: InferenceOutput) {
        let message: Message
        do { message = try output.encode() } catch {
            // JSON of plain numbers and strings: not expected to fail; the deadline path retries.
            logger.error("could not encode an inference output", metadata: ["job.id": "\(output.job)", "error": "\(error)"])
            return
        }
        var metadata: Logger.Metadata = [
            "resolution": "\(output.resolution)/\(output.resolutions)", "elapsed_ms": "\(Int(output.elapsedMs))",
            "samples": "\(output.answers.count)", "decided": "\(output.answers.count(where: \.decided))",
        ]
        if output.status != .partial {
            metadata["unanswered"] = "\(output.answers.count { $0.resolution == 0 })"
            metadata["skipped"] = "\(output.skipped)"
        }
        if let late = output.lateMs { metadata[late >= 0 ? "late_ms" : "early_ms"] = "\(Int(abs(late)))" }
        publishOutput(message, routingKey: output.routingKey, job: output.job, status: output.status,
                      log: "inference refinement", metadata: metadata, final: output.status == .partial ? nil : .inference(output))
    }
}
