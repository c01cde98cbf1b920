// The job table's inference jobs: per-sample answers in, the exit rule applied by the pure
// state machine (InferenceAggregation), next-resolution tasks out only for undecided samples,
// per-sample refinements out, and every sample's best answer at the deadline.
import SRCore
import SRProtocol
import SRTransport

/// An open inference job: its spec (to publish tasks), its state machine, and tasks whose
/// publish failed (retried on every tick, in order, while the job is open).
public struct InferenceJobState: Sendable {
    public var job: InferenceJob
    public var aggregation: InferenceAggregation
    public var unsentTasks: [Message] = []
}

extension JobTable {
    mutating func openInference(_ job: InferenceJob, _ rule: ExitRule, _ h: Handle, _ redelivered: Bool,
                                _ now: Int64) -> [Action] {
        let id = job.id
        if closed.contains(id) { return [.ack(h)] }
        if case .matVec? = openJob(id) {
            return [.deadLetter(h, queue: Topology.jobsQueue, reason: "job id \(id) is already an open mat-vec job; ids must be unique")]
        }
        if isOpening(id) {
            return [.deadLetter(h, queue: Topology.jobsQueue, reason: "job id \(id) is already a mat-vec job being opened; ids must be unique")]
        }
        park(id) { _ in }
        entries[id]?.held.append(h)
        // A redelivered copy (after a reconnect) is held too, so the job stays recoverable.
        guard openJob(id) == nil, case .unknown(let parked)? = entries[id]?.lifecycle else { return [] }
        // Mat-vec partials and task failures parked under this id are not this job's: held
        // (acked when it closes), never replayed. Resolution 1 of every sample was published
        // by the producer with the open record.
        let state = InferenceJobState(job: job, aggregation: InferenceAggregation(
            job: id, sampleCount: job.samples, resolutions: job.resolutions, rule: rule, deadline: job.deadline))
        let lifecycle = started(.inference(state), redelivered, now)
        entries[id]?.lifecycle = lifecycle
        var actions: [Action] = [
            .count(.opened),
            .log(.info, "inference job opened", [
                "job.id": id, "samples": "\(job.samples)", "resolutions": "\(job.resolutions)",
                "exit": job.exitRule, "deadline_ms": "\(job.relativeDeadlineMs)",
            ]),
        ]
        for (p, _) in parked.inferencePartials { actions += receiveInference(p, now) }
        if parked.deadline != nil { actions += parkedDeadline(id, parked.deadlineIssued, now) }
        return actions
    }

    mutating func inferencePartial(_ p: InferencePartial, _ h: Handle, _ now: Int64) -> [Action] {
        if closed.contains(p.job) { return [.count(.latePartial), .ack(h)] }
        switch openJob(p.job) {
        case .matVec?:
            return [.deadLetter(h, queue: Topology.partialsQueue, reason: "an inference partial for mat-vec job \(p.job)")]
        case nil:
            // Its open record has not arrived yet (a different queue): keep it, held.
            park(p.job) { $0.inferencePartials.append((p, now)) }
            entries[p.job]?.held.append(h)
            return []
        case .inference(let state)?:
            if let why = Self.mismatch(p, state.job) {
                return [.deadLetter(h, queue: Topology.partialsQueue, reason: why)]
            }
            // Held until the job closes, duplicates included: after a reconnect a redelivered
            // copy may be the only live one.
            entries[p.job]?.held.append(h)
            return receiveInference(p, now)
        }
    }

    /// Why a partial cannot belong to `job`, or nil.
    static func mismatch(_ p: InferencePartial, _ job: InferenceJob) -> String? {
        if p.classes != job.classes { return "job \(job.id) has \(job.classes) classes; the partial has \(p.classes) logits per sample" }
        if p.resolution < 1 || p.resolution > job.resolutions { return "resolution \(p.resolution) is outside 1...\(job.resolutions)" }
        if let bad = p.indices.first(where: { $0 >= job.samples }) { return "sample \(bad) is outside the job's \(job.samples) samples" }
        return nil
    }

    mutating func receiveInference(_ p: InferencePartial, _ now: Int64) -> [Action] {
        if case .inference(let state)? = openJob(p.job), let why = Self.mismatch(p, state.job) {
            return [.log(.warning, "ignoring an inference partial", ["job.id": p.job, "reason": why])]
        }
        var refused: String?
        var actions = applyInference(p.job, now) { agg in
            do { return try agg.receive(resolution: p.resolution, indices: p.indices, logits: p.logits) } catch {
                refused = "\(error)"
                return []
            }
        }
        if let refused { actions.append(Action.log(.warning, "ignoring an inference partial", ["job.id": p.job, "reason": refused])) }
        return actions
    }

    /// Runs `body` on inference job `id`'s state machine; its actions as the table's.
    mutating func applyInference(_ id: String, _ now: Int64,
                                 _ body: (inout InferenceAggregation) -> [InferenceAggregation.Action]) -> [Action] {
        guard case .inference(var state)? = openJob(id) else { return [] }
        let out = body(&state.aggregation)
        setOpenJob(id, .inference(state))
        var actions: [Action] = []
        for action in out {
            switch action {
            case .evaluate(let r, let samples):
                actions += publishTasks(id, resolution: r, samples: samples, now)
            case .refined(let samples):
                actions.append(.emit(.inference(Self.output(state, .partial, samples, now))))
            case .finish(let status):
                // The job closes once this is confirmed (`.finalConfirmed`).
                actions.append(.emit(.inference(Self.output(state, status, Array(0..<state.job.samples), now))))
            }
        }
        return actions
    }

    /// Tasks for `samples` at resolution r, `blockSize` samples each, expiring at the deadline;
    /// queued behind earlier unsent tasks, if any (resolution priority is per message).
    mutating func publishTasks(_ id: String, resolution r: Int, samples: [Int], _ now: Int64) -> [Action] {
        guard case .inference(var state)? = openJob(id) else { return [] }
        let job = state.job
        let remaining = job.deadline.remainingMs(at: now)
        guard remaining > 0 else { return [] }
        let sorted = samples.sorted()
        let tasks = stride(from: 0, to: sorted.count, by: job.blockSize).map { start in
            InferenceTask(job: job, resolution: r, indices: Array(sorted[start..<min(sorted.count, start + job.blockSize)]))
                .encode(expiration: .milliseconds(remaining))
        }
        guard state.unsentTasks.isEmpty else {
            state.unsentTasks += tasks
            setOpenJob(id, .inference(state))
            return []
        }
        return [.publishTasks(job: id, tasks)]
    }

    static func output(_ state: InferenceJobState, _ status: OutputStatus, _ samples: [Int], _ now: Int64) -> InferenceOutput {
        let agg = state.aggregation
        let answers = samples.map { s in
            let sample = agg.samples[s]
            return InferenceOutput.Answer(sample: s, label: sample.label, resolution: sample.resolution,
                                          margin: sample.margin, decided: sample.decided, logits: sample.logits)
        }
        return InferenceOutput(job: state.job.id, status: status, resolutions: state.job.resolutions,
                               elapsedMs: Double(now - state.job.createdMs),
                               lateMs: status == .deadline ? Double(state.job.deadline.lateMs(at: now)) : nil,
                               skipped: agg.skipped, answers: answers)
    }
}
