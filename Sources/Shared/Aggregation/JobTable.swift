// The aggregator's job table as a pure state machine: one entry per job it has heard of, holding
// the job's lifecycle and the deliveries kept for it; decoded inputs, the clock and the outcome
// of publishes in, actions out. No I/O, no logging, no clock: AggregatorService performs the
// actions. Inputs and the tick are in JobTable+Inputs.swift, inference jobs in
// JobTable+Inference.swift.
import SRCore
import SRProtocol
import SRTransport

/// Where a job is in its life at the aggregator, as `JobTable.phase(of:now:)` reports it.
public enum JobPhase: Sendable, Equatable {
    /// Inputs arrived before the open record (another queue): parked, held.
    case unknown
    /// The open record is here; its matrix's row checksums are being built.
    case opening
    case open
    /// Reopened from a redelivered record: its deadline waits for the replay grace.
    case replaying
    /// Its final output is on its way; it closes (its inputs are acked) once confirmed.
    case finalPending
    case closed
}

/// Every job the aggregator knows, one entry each. `Handle` names a delivery the service keeps
/// (so the table holds no transport object); a handle in `.ack` or `.deadLetter` is done with.
public struct JobTable<Handle: Hashable & Sendable>: Sendable {
    public typealias Action = JobTableAction<Handle>
    public typealias Event = JobTableEvent<Handle>

    public struct Configuration: Sendable {
        /// Answer a job at its deadline + this (ms) when its deadline message has not come.
        public var safetyGraceMs: Int64
        /// How long (ms) inputs of a job never opened are kept before they are dropped.
        public var unknownJobGraceMs: Int64
        /// How long (ms) a job reopened from a redelivered record waits for its replayed
        /// partials before its deadline fires.
        public var replayGraceMs: Int64
        public init(safetyGraceMs: Int64 = 0, unknownJobGraceMs: Int64 = 10_000, replayGraceMs: Int64 = 300) {
            self.safetyGraceMs = safetyGraceMs
            self.unknownJobGraceMs = unknownJobGraceMs
            self.replayGraceMs = replayGraceMs
        }
    }

    /// Counters the service keeps.
    public enum Counter: Sendable, Equatable {
        case opened, latePartial, duplicatePartial, forgedPartials(Int), safetyTimerFiring, failedTask
    }

    public enum LogLevel: Sendable, Equatable { case debug, info, warning, error }

    /// Inputs of a job whose open record has not been handled yet, with when each came.
    struct Parked: Sendable {
        var partials: [(PartialMessage, Int64, Message)] = []
        var inferencePartials: [(InferencePartial, Int64)] = []
        var deadline: Int64?
        /// What the parked deadline message carried.
        var deadlineIssued: Deadline?
        var failure: (TaskFailure, Int64)?

        /// Stale when any kind of input has waited longer than `grace`, all of it.
        func isStale(_ now: Int64, _ grace: Int64) -> Bool {
            (!partials.isEmpty && partials.allSatisfy { $0.1 + grace < now })
                || (!inferencePartials.isEmpty && inferencePartials.allSatisfy { $0.1 + grace < now })
                || deadline.map { $0 + grace < now } ?? false
                || failure.map { $0.1 + grace < now } ?? false
        }
    }

    struct Opening: Sendable {
        var record: OpenRecord
        var handle: Handle
        var redelivered: Bool
        var parked: Parked
        /// The checksums it waits for, if any.
        var checksumKey: String?
    }

    enum OpenJob: Sendable {
        case matVec(JobAggregation)
        case inference(InferenceJobState)

        var isAnswered: Bool {
            switch self {
            case .matVec(let a): a.isClosed
            case .inference(let s): s.aggregation.isClosed
            }
        }

        var deadline: Deadline {
            switch self {
            case .matVec(let a): a.job.deadline
            case .inference(let s): s.job.deadline
            }
        }

        var createdMs: Int64 {
            switch self {
            case .matVec(let a): a.job.createdMs
            case .inference(let s): s.job.createdMs
            }
        }

        /// A deadline message issued before this job was created is an earlier job's (same
        /// id, e.g. a resubmission with --id after an aggregator restart left it queued).
        func isStale(_ issued: Deadline?) -> Bool {
            issued.map { $0.epochMs < createdMs } ?? false
        }
    }

    /// A job's life until it closes (then only its id is remembered, in `closed`).
    enum Lifecycle: Sendable {
        case unknown(Parked)
        case opening(Opening)
        case open(OpenJob)
        /// Open, reopened from a redelivered record: no deadline fires before `until`; one that
        /// comes meanwhile is deferred to the first tick after it.
        case replaying(OpenJob, until: Int64, deadlineDeferred: Bool)
    }

    struct Entry: Sendable {
        var lifecycle: Lifecycle
        /// Deliveries acknowledged when the job closes (or its parked inputs are dropped).
        var held: [Handle] = []
    }

    public let configuration: Configuration
    var entries: [String: Entry] = [:]
    /// Ids of closed jobs (the latest 100 000): their late inputs are acknowledged and dropped.
    var closed: Set<String> = []
    var closedOrder: [String] = []
    /// Jobs opening, by the checksums they wait for (in the order their records came).
    var checksumWaits: [String: [String]] = [:]
    /// Finals whose publish failed, by job: sent again on the next tick.
    var unpublished: [String: JobOutput] = [:]

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    /// Where job `id` is in its life; nil: never heard of.
    public func phase(of id: String, now: Int64) -> JobPhase? {
        if closed.contains(id) { return .closed }
        switch entries[id]?.lifecycle {
        case nil: return nil
        case .unknown?: return .unknown
        case .opening?: return .opening
        case .open(let job)?: return job.isAnswered ? .finalPending : .open
        case .replaying(let job, let until, _)?:
            return job.isAnswered ? .finalPending : until > now ? .replaying : .open
        }
    }

    /// Deliveries held for job `id` (acknowledged when it closes).
    public func held(_ id: String) -> [Handle] { entries[id]?.held ?? [] }

    /// Whether `h` is the open record of a job waiting for its checksums (the service keeps
    /// its body: a refused record goes to sr.dead whole). O(jobs waiting for checksums).
    public func awaitsChecksums(_ h: Handle) -> Bool {
        checksumWaits.values.contains { ids in
            ids.contains { id in
                if case .opening(let o)? = entries[id]?.lifecycle { return o.handle == h }
                return false
            }
        }
    }

    /// Whether inference job `id` has tasks waiting for a retry (new ones queue behind them).
    public func hasUnsentTasks(_ id: String) -> Bool {
        if case .inference(let s)? = openJob(id) { return !s.unsentTasks.isEmpty }
        return false
    }

    /// Takes one event at wall-clock time `now` (ms since the epoch). Every event except a
    /// deadline message and the service's answers is preceded by answering the jobs whose
    /// deadline + safety grace has passed (`fireDueDeadlines`).
    public mutating func handle(_ event: Event, now: Int64) -> [Action] {
        var actions: [Action] = []
        switch event {
        case .deadline, .invalidDeadline, .opened, .refused, .checksumsNeeded, .tasksUnsent: break
        default: actions = fireDueDeadlines(now)
        }
        switch event {
        case .openRecord(let record, let h, let redelivered): actions += openRecord(record, h, redelivered)
        case .invalidOpenRecord(let h, let id, let reason):
            actions += refusal(id, "invalid open record: \(reason)")
            actions.append(.deadLetter(h, queue: Topology.jobsQueue, reason: "invalid open record: \(reason)"))
        case .inferenceOpenRecord(let job, let rule, let h, let redelivered):
            actions += openInference(job, rule, h, redelivered, now)
        case .opened(let agg): actions += opened(agg, now)
        case .refused(let id, let reason): actions += refuseOpening(id, reason)
        case .checksumsNeeded(let id, let key):
            guard case .opening(var o)? = entries[id]?.lifecycle else { break }
            o.checksumKey = key
            entries[id]?.lifecycle = .opening(o)
            if checksumWaits[key] == nil { actions.append(.buildChecksums(key: key, o.record.job)) }
            checksumWaits[key, default: []].append(id)
        case .checksumsReady(let key, let failure):
            for id in checksumWaits.removeValue(forKey: key) ?? [] {
                guard case .opening(var o)? = entries[id]?.lifecycle else { continue }
                o.checksumKey = nil
                entries[id]?.lifecycle = .opening(o)
                if let failure { actions += refuseOpening(id, failure) } else { actions.append(.verify(o.record, mayWait: false)) }
            }
        case .partial(let p, let h, let message): actions += partial(p, h, message, now)
        case .inferencePartial(let p, let h): actions += inferencePartial(p, h, now)
        case .taskFailure(let f, let h): actions += taskFailure(f, h, now)
        case .deadline(let id, let h, let issued): actions += deadline(id, h, issued, now)
        case .invalidDeadline(let h, let reason): actions.append(.deadLetter(h, queue: Topology.deadlinesQueue, reason: reason))
        case .invalid(let h, let queue, let reason): actions.append(.deadLetter(h, queue: queue, reason: reason))
        case .ledgerEntry(let id, let h):
            // Our own finals, copied to the ledger: a job not open here (answered by an
            // aggregator before us) is remembered as closed.
            if let id, openJob(id) == nil, !isOpening(id) { remember(id) }
            actions.append(.ack(h))
        case .finalConfirmed(let id):
            // A retried final can be confirmed twice; the job closes once.
            if openJob(id) != nil { actions += close(id) }
        case .finalFailed(let id, let output): unpublished[id] = output
        case .tasksUnsent(let id, let tasks):
            guard case .inference(var s)? = openJob(id) else { break }
            s.unsentTasks += tasks
            setOpenJob(id, .inference(s))
        case .tick: actions += tick(now)
        }
        return actions
    }

    /// Remembers `id` as closed (its late inputs are acknowledged and dropped).
    public mutating func remember(_ id: String) {
        guard closed.insert(id).inserted else { return }
        closedOrder.append(id)
        if closedOrder.count > 100_000 { closed.remove(closedOrder.removeFirst()) }
    }

    // MARK: Opening

    mutating func openRecord(_ record: OpenRecord, _ h: Handle, _ redelivered: Bool) -> [Action] {
        let id = record.job.id
        if closed.contains(id) { return [.ack(h)] }
        if case .inference? = openJob(id) {
            return [.deadLetter(h, queue: Topology.jobsQueue, reason: "job id \(id) is already an open inference job; ids must be unique")]
        }
        if openJob(id) != nil || isOpening(id) {
            // Redelivered (e.g. after a reconnect, with a new tag): hold the new copy too, so
            // the job stays recoverable until it closes.
            entries[id]?.held.append(h)
            return []
        }
        var parked = Parked()
        if case .unknown(let p)? = entries[id]?.lifecycle { parked = p }
        let opening = Opening(record: record, handle: h, redelivered: redelivered, parked: parked)
        entries[id, default: Entry(lifecycle: .unknown(parked))].lifecycle = .opening(opening)
        return [.verify(record, mayWait: true)]
    }

    mutating func opened(_ agg: JobAggregation, _ now: Int64) -> [Action] {
        let id = agg.job.id
        guard case .opening(let o)? = entries[id]?.lifecycle else { return [] }
        // Inference partials parked under this id are not this job's: they stay held (acked
        // when the job closes) but are never replayed.
        entries[id]?.held.append(o.handle)
        let lifecycle = started(.matVec(agg), o.redelivered, now)
        entries[id]?.lifecycle = lifecycle
        var actions: [Action] = [.count(.opened)]
        for (p, _, message) in o.parked.partials {
            var outcome = JobAggregation.PartialOutcome.accepted
            actions += applyMatVec(id) { agg in
                let (result, out) = agg.receive(p, nowMs: now)
                outcome = result
                return out
            }
            // Its delivery stays held with the job's; a refused one still ends in sr.dead.
            switch outcome {
            case .forged(let reason):
                actions.append(.count(.forgedPartials(1)))
                actions.append(.deadLetterCopy(message, queue: Topology.partialsQueue, reason: reason))
            case .invalid(let reason):
                actions.append(.deadLetterCopy(message, queue: Topology.partialsQueue, reason: reason))
            case .accepted, .duplicate, .late:
                break
            }
        }
        if let (failure, _) = o.parked.failure { actions += failJob(failure, now) }
        if o.parked.deadline != nil { actions += parkedDeadline(id, o.parked.deadlineIssued, now) }
        return actions
    }

    /// Refuses an opening job's record: a `failed` final for whoever follows the job, the
    /// record to sr.dead; its parked inputs stay until the unknown-job grace drops them.
    mutating func refuseOpening(_ id: String, _ reason: String) -> [Action] {
        guard case .opening(let o)? = entries[id]?.lifecycle else { return [] }
        entries[id]?.lifecycle = .unknown(o.parked)
        if entries[id]?.held.isEmpty == true, o.parked.isEmpty { entries[id] = nil }
        return refusal(id, "refused: \(reason)")
            + [.deadLetter(o.handle, queue: Topology.jobsQueue, reason: "refused open record: \(reason)")]
    }

    /// Tells whoever follows a refused job why (a `failed` final), when its record names a
    /// well-formed job id that is not already open or closed: the client stops waiting at
    /// once instead of at its timeout. Published like any final (retried until confirmed).
    func refusal(_ id: String?, _ reason: String) -> [Action] {
        guard let id, MatVecJob.isValidID(id), openJob(id) == nil, !closed.contains(id) else { return [] }
        return [.emit(.matVec(.failed(job: id, of: 0, elapsedMs: 0, reason: reason)))]
    }

    /// The lifecycle of a job that just opened: replaying when its record was redelivered
    /// (an earlier aggregator had the job: its redelivered partials get the replay grace).
    func started(_ job: OpenJob, _ redelivered: Bool, _ now: Int64) -> Lifecycle {
        redelivered ? .replaying(job, until: now + configuration.replayGraceMs, deadlineDeferred: false) : .open(job)
    }

    /// Forgets a finished job and acknowledges its inputs — only once its final is confirmed.
    mutating func close(_ id: String) -> [Action] {
        let held = entries.removeValue(forKey: id)?.held ?? []
        remember(id)
        return held.map { .ack($0) }
    }

    // MARK: Helpers

    func openJob(_ id: String) -> OpenJob? { entries[id].flatMap { Self.openJob($0.lifecycle) } }

    static func openJob(_ lifecycle: Lifecycle) -> OpenJob? {
        switch lifecycle {
        case .open(let job), .replaying(let job, _, _): job
        default: nil
        }
    }

    func isOpening(_ id: String) -> Bool {
        if case .opening? = entries[id]?.lifecycle { return true }
        return false
    }

    mutating func setOpenJob(_ id: String, _ job: OpenJob) {
        switch entries[id]?.lifecycle {
        case .open?: entries[id]?.lifecycle = .open(job)
        case .replaying(_, let until, let deferred)?: entries[id]?.lifecycle = .replaying(job, until: until, deadlineDeferred: deferred)
        default: break
        }
    }

    /// Changes the parked inputs of a job not open yet (creating its entry if needed); a no-op
    /// for an open job.
    mutating func park(_ id: String, _ body: (inout Parked) -> Void) {
        switch entries[id]?.lifecycle {
        case nil:
            var parked = Parked()
            body(&parked)
            entries[id] = Entry(lifecycle: .unknown(parked))
        case .unknown(var parked)?:
            body(&parked)
            entries[id]?.lifecycle = .unknown(parked)
        case .opening(var o)?:
            body(&o.parked)
            entries[id]?.lifecycle = .opening(o)
        case .open?, .replaying?:
            break
        }
    }

    /// Runs `body` on mat-vec job `id`'s state machine; its actions as the table's.
    mutating func applyMatVec(_ id: String, _ body: (inout JobAggregation) -> [JobAggregation.Action]) -> [Action] {
        guard case .matVec(var agg)? = openJob(id) else { return [] }
        let out = body(&agg)
        setOpenJob(id, .matVec(agg))
        return out.compactMap { action -> Action? in
            switch action {
            case .emit(var output):
                output.verified = agg.verified
                return .emit(.matVec(output))
            case .close:
                // The job closes (its inputs are acked) once its final is confirmed
                // (`.finalConfirmed`). Until then it only answers late inputs.
                return nil
            case .layerDone(let layer):
                return .publishDone(job: id, layer: layer)
            case .progress(let notice):
                return .publishProgress(notice)
            }
        }
    }
}

extension JobTable.Parked {
    var isEmpty: Bool { partials.isEmpty && inferencePartials.isEmpty && deadline == nil && failure == nil }
}
