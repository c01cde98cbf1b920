// The job table's mat-vec inputs and its clock: partials, task-failed notices and deadline
// messages (parked while their job is not open), local deadline firing, and the tick's retries,
// replay ends and unknown-job clean-up.
import SRCore
import SRProtocol
import SRTransport

extension JobTable {
    mutating func partial(_ p: PartialMessage, _ h: Handle, _ message: Message, _ now: Int64) -> [Action] {
        if closed.contains(p.job) { return [.count(.latePartial), .ack(h)] }
        switch openJob(p.job) {
        case .inference?:
            return [.deadLetter(h, queue: Topology.partialsQueue, reason: "a mat-vec partial for inference job \(p.job)")]
        case nil:
            // Its open record has not arrived yet (a different queue): keep it, held.
            park(p.job) { $0.partials.append((p, now, message)) }
            entries[p.job]?.held.append(h)
            return []
        case .matVec?:
            break
        }
        var outcome = JobAggregation.PartialOutcome.accepted
        var refusedParity: [String] = []
        var forged = 0
        var actions = applyMatVec(p.job) { agg in
            let before = agg.refusedParity.count, forgedBefore = agg.forgedPartials
            let (result, out) = agg.receive(p, nowMs: now)
            outcome = result
            // Parity results refused when this partial completed their mini-job (taken
            // earlier, with nothing yet to check them against): counted and logged here.
            if case .accepted = result, agg.forgedPartials > forgedBefore {
                refusedParity = Array(agg.refusedParity.suffix(max(1, agg.refusedParity.count - before)))
                forged = agg.forgedPartials - forgedBefore
            }
            return out
        }
        if forged > 0 { actions.append(.count(.forgedPartials(forged))) }
        for why in refusedParity {
            actions.append(.log(.error, "refusing coded partials that decode to a wrong result — check the consumers",
                                ["job.id": p.job, "reason": why]))
        }
        switch outcome {
        case .accepted:
            entries[p.job]?.held.append(h)
        case .duplicate:
            actions.append(.count(.duplicatePartial))
            // While the job is open a duplicate may be the only live copy (a redelivery after a
            // reconnect invalidates the earlier tag): hold it until the job closes.
            entries[p.job]?.held.append(h)
        case .late:
            actions += [.count(.latePartial), .ack(h)]
        case .invalid(let reason):
            actions.append(.deadLetter(h, queue: Topology.partialsQueue, reason: reason))
        case .forged(let reason):
            actions.append(.count(.forgedPartials(1)))
            actions.append(.log(.error, "refusing a wrong partial — check that consumer", ["job.id": p.job, "worker": p.worker]))
            actions.append(.deadLetter(h, queue: Topology.partialsQueue, reason: reason))
        }
        return actions
    }

    /// A mat-vec job fails now with the consumer's reason; a notice that overtook its job's
    /// open record (another queue) waits for it, like a partial. Either way the notice is held
    /// with the job's inputs. A notice for a closed job, or an inference job, is acknowledged
    /// and logged: that job's deadline answers it.
    mutating func taskFailure(_ failure: TaskFailure, _ h: Handle, _ now: Int64) -> [Action] {
        let id = failure.job
        if closed.contains(id) { return [.ack(h)] }
        if case .inference? = openJob(id) {
            return [.log(.warning, "a consumer could not compute a task of an inference job; its deadline answers it",
                         Self.metadata(failure)), .ack(h)]
        }
        park(id) { _ in }
        entries[id]?.held.append(h)
        guard openJob(id) != nil else {
            park(id) { if $0.failure == nil { $0.failure = (failure, now) } }
            return []
        }
        return failJob(failure, now)
    }

    /// Ends an open mat-vec job with the consumer's reason (once: later notices change nothing).
    mutating func failJob(_ failure: TaskFailure, _ now: Int64) -> [Action] {
        guard case .matVec(let agg)? = openJob(failure.job), !agg.isClosed else { return [] }
        return [.log(.error, "job failed: a consumer could not compute one of its tasks", Self.metadata(failure)),
                .count(.failedTask)]
            + applyMatVec(failure.job) { $0.taskFailed(reason: failure.description, nowMs: now) }
    }

    static func metadata(_ failure: TaskFailure) -> [String: String] {
        ["job.id": failure.job, "task": failure.task, "worker": failure.worker, "reason": failure.reason]
    }

    mutating func deadline(_ id: String, _ h: Handle, _ issued: Deadline?, _ now: Int64) -> [Action] {
        if closed.contains(id) { return [.ack(h)] }
        if let job = openJob(id), job.isStale(issued) { return [.ack(h)] + Self.staleDeadline(id, issued, job) }
        park(id) { _ in }
        entries[id]?.held.append(h)
        if openJob(id) == nil {
            park(id) {
                $0.deadline = now
                $0.deadlineIssued = issued
            }
            return []
        }
        return deadlineReached(id, now)
    }

    /// A deadline message that came before its job's open record, now that the job is open.
    /// (Its delivery is already held with the job's.)
    mutating func parkedDeadline(_ id: String, _ issued: Deadline?, _ now: Int64) -> [Action] {
        guard let job = openJob(id) else { return [] }
        if job.isStale(issued) { return Self.staleDeadline(id, issued, job) }
        return deadlineReached(id, now)
    }

    static func staleDeadline(_ id: String, _ issued: Deadline?, _ job: OpenJob) -> [Action] {
        [.log(.warning, "ignoring a deadline message issued before this job was created (an earlier job with the same id)",
              ["job.id": id, "issued_ms": "\(issued?.epochMs ?? 0)", "created_ms": "\(job.createdMs)"])]
    }

    /// An open job's deadline: deferred while it replays, answered otherwise.
    mutating func deadlineReached(_ id: String, _ now: Int64) -> [Action] {
        if case .replaying(let job, let until, _)? = entries[id]?.lifecycle, until > now {
            entries[id]?.lifecycle = .replaying(job, until: until, deadlineDeferred: true)
            return []
        }
        return fireDeadline(id, now)
    }

    mutating func fireDeadline(_ id: String, _ now: Int64) -> [Action] {
        switch openJob(id) {
        case .matVec?: applyMatVec(id) { $0.deadlineFired(nowMs: now) }
        case .inference?: applyInference(id, now) { $0.deadlineFired(nowMs: now) }
        case nil: []
        }
    }

    /// Answers every job whose deadline + safety grace has passed by this clock and whose
    /// deadline message has not come: behind a backlog of partials, waiting for the message
    /// would make the answer late by the backlog. A replaying job waits out its grace first.
    /// O(open jobs).
    mutating func fireDueDeadlines(_ now: Int64) -> [Action] {
        let grace = configuration.safetyGraceMs
        var due: [(String, Deadline)] = []
        for (id, entry) in entries {
            let job: OpenJob
            switch entry.lifecycle {
            case .open(let j): job = j
            case .replaying(let j, let until, _) where until <= now: job = j
            default: continue
            }
            if !job.isAnswered, job.deadline.lateMs(at: now) >= grace { due.append((id, job.deadline)) }
        }
        var actions: [Action] = []
        for (id, deadline) in due {
            // Logged at debug: routine on a busy broker.
            actions.append(.count(.safetyTimerFiring))
            actions.append(.log(.debug, "deadline answered by the local clock before its message arrived",
                                ["job.id": id, "late_ms": "\(deadline.lateMs(at: now))"]))
            actions += fireDeadline(id, now)
        }
        return actions
    }

    mutating func tick(_ now: Int64) -> [Action] {
        // Finals that failed go out again (their jobs close when one is confirmed).
        var actions: [Action] = unpublished.values.map { .emit($0) }
        unpublished.removeAll()
        let unsent = entries.compactMap { id, entry -> String? in
            guard case .inference(let s)? = Self.openJob(entry.lifecycle), !s.unsentTasks.isEmpty else { return nil }
            return id
        }
        for id in unsent {
            guard case .inference(var s)? = openJob(id) else { continue }
            actions.append(.retryTasks(job: id, s.unsentTasks))
            s.unsentTasks = []
            setOpenJob(id, .inference(s))
        }
        // Replays that are over: a deadline deferred meanwhile fires now.
        let replayed = entries.filter { _, entry in
            if case .replaying(_, let until, _) = entry.lifecycle { return until <= now }
            return false
        }
        for (id, entry) in replayed {
            guard case .replaying(let job, _, let deferred) = entry.lifecycle else { continue }
            entries[id]?.lifecycle = .open(job)
            if deferred { actions += fireDeadline(id, now) }
        }
        let grace = configuration.unknownJobGraceMs
        let stale = entries.filter { _, entry in
            if case .unknown(let parked) = entry.lifecycle { return parked.isStale(now, grace) }
            return false
        }
        for (id, entry) in stale {
            entries[id] = nil
            actions.append(.log(.warning, "dropping inputs of a job that was never opened", ["job.id": id]))
            actions += entry.held.map { .ack($0) }
        }
        return actions
    }
}
