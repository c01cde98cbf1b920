// The aggregator role: job opens, partials and deadlines in; refinements out (one log line
// each). Mat-vec jobs here; inference jobs in AggregatorService+Inference.swift. Inputs stay unacknowledged until their job's final output is confirmed, so a crashed
// aggregator loses nothing: on restart the broker redelivers them and the state rebuilds.
import SRAggregation
import SRCore
import SRProtocol
import SRStore
import SRTransport
import Logging
import ServiceLifecycle
import Synchronization

/// Counters an aggregator keeps (read by tests, the demo and metrics).
public struct AggregatorCounters: Sendable {
    public var opened = 0
    public var completed = 0
    public var deadlines = 0
    public var refinements = 0
    public var latePartials = 0
    public var duplicatePartials = 0
    public var deadLettered = 0
    public var safetyTimerFirings = 0
    /// Partials refused because they failed their checksum (a faulty or hostile consumer).
    public var forgedPartials = 0
    /// Tasks a consumer reported it could not compute (each fails its open job).
    public var failedTasks = 0
}

public final class AggregatorService: Service, Sendable {
    public struct Configuration: Sendable {
        /// Answer a job at its deadline + this, by this machine's clock, when the deadline
        /// message has not arrived by then. The broker's timer fires ~1 ms late when idle but
        /// 80–130 ms late when the machine is busy (measured with 5 000-image inference jobs
        /// on 2 cores), and a lost or stuck delay queue would never fire. 0: the machines'
        /// clocks are synchronised (NTP); raise it by the worst clock skew between producers
        /// and this machine, or a job may be answered that much early.
        public var safetyGrace: Duration = .zero
        /// How long inputs of a job never opened are kept before they are dropped.
        public var unknownJobGrace: Duration = .seconds(10)
        /// After a restart (a job's open record arrives redelivered), how long its deadline
        /// waits for the job's redelivered partials to be replayed, so that the answer is the
        /// best the previous aggregator had seen rather than whatever replayed first.
        public var replayGrace: Duration = .milliseconds(300)
        /// Period of the retry and clean-up check (and of the local deadline check when idle).
        public var tick: Duration = .milliseconds(10)
        public init() {}
    }

    enum Source: Sendable { case jobs, partials, deadlines, finals }
    enum Event: Sendable {
        case delivery(Source, Delivery, Subscription)
        case tick
        /// The publisher task got the broker's confirm for job's final output: close it.
        case finalPublished(String)
        /// The final output could not be published: retry it (the job's inputs stay held).
        case finalFailed(String, FinalOutput)
        /// A registered matrix's row checksums were built off the loop (or could not be).
        case checksumsReady(String, Result<RowChecksums, WireError>)
    }

    let transport: any Transport
    /// Where A's statistics of registered matrices are read (open records leave them out);
    /// nil: only jobs whose records carry their statistics can be aggregated.
    let store: OperandStore?
    let configuration: Configuration
    let logger: Logger
    let wallClock: @Sendable () -> Int64
    let counters = Mutex(AggregatorCounters())
    /// Row checksums of registered matrices, by digest, partition, mode, shape and row block
    /// (AggregatorService+Verification.swift); `prepareChecksums` fills it ahead of jobs.
    let checksumCache = Mutex<[String: RowChecksums]>([:])
    /// Deadline deliveries not handled yet. The event loop takes them before any other event:
    /// behind a backlog of partials in one stream they would otherwise fire late by the backlog.
    let dueDeadlines = Mutex<[(Delivery, Subscription)]>([])
    /// Outputs on their way to sr.outputs (OutputOutbox.swift).
    let outbox = OutputOutbox()

    public init(transport: any Transport, store: OperandStore? = nil, configuration: Configuration = .init(), logger: Logger,
                wallClock: @escaping @Sendable () -> Int64 = WallClock.nowMs) {
        self.transport = transport
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.wallClock = wallClock
    }

    public var snapshot: AggregatorCounters { counters.withLock { $0 } }

    public func run() async throws {
        try await Topology.declare(on: transport)
        // prefetch 0 (unlimited): inputs are held until their job closes.
        let jobs = try await transport.subscribe(queue: Topology.jobsQueue, prefetch: 0)
        let partials = try await transport.subscribe(queue: Topology.partialsQueue, prefetch: 0)
        let deadlines = try await transport.subscribe(queue: Topology.deadlinesQueue, prefetch: 0)
        let answered = await answeredJobs()
        let ledger = try await transport.subscribe(queue: Topology.finalsQueue, prefetch: 0)
        let (events, sink) = AsyncStream<Event>.makeStream()
        logger.info("aggregating", metadata: ["queues": "\(Topology.jobsQueue), \(Topology.partialsQueue), \(Topology.deadlinesQueue)"])
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for (source, sub) in [(Source.jobs, jobs), (.partials, partials), (.deadlines, deadlines), (.finals, ledger)] {
                    group.addTask {
                        do {
                            for try await d in sub.deliveries {
                                if source == .deadlines {
                                    self.dueDeadlines.withLock { $0.append((d, sub)) }
                                    sink.yield(.tick)   // wakes the loop, which takes them first
                                } else {
                                    sink.yield(.delivery(source, d, sub))
                                }
                            }
                        } catch {
                            self.logger.error("input stream failed", metadata: ["stream": "\(source)", "error": "\(error)"])
                        }
                        sink.finish()
                    }
                }
                let tick = configuration.tick
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: tick)
                        sink.yield(.tick)
                    }
                }
                let outbox = self.outbox
                group.addTask { await self.publishOutputs(outbox) { sink.yield($0) } }
                var core = Core(service: self, post: { sink.yield($0) })
                for id in answered { core.remember(id) }
                for await event in events {
                    await core.handle(event)
                }
                outbox.finish()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            sink.finish()
        }
        for s in [jobs, partials, deadlines, ledger] { await s.cancel() }
    }

    /// The jobs whose finals are in the ledger (sr.finals) at start. A previous aggregator may
    /// have published a job's final and died before acknowledging the job's inputs: they come
    /// back redelivered, and without this the job would be answered twice. Reads what the
    /// queue held when counted (bounded wait), acknowledging each entry.
    func answeredJobs() async -> Set<String> {
        guard let count = try? await transport.messageCount(queue: Topology.finalsQueue), count > 0,
              let ledger = try? await transport.subscribe(queue: Topology.finalsQueue, prefetch: 0) else { return [] }
        let reader = Task { () -> Set<String> in
            var ids: Set<String> = []
            var seen = 0
            do {
                for try await d in ledger.deliveries {
                    if case .string(let id)? = d.message.headers[Header.job] { ids.insert(id) }
                    try? await ledger.ack(d)
                    seen += 1
                    if seen >= count { break }
                }
            } catch {}
            return ids
        }
        // Bounded: entries that expired meanwhile never come; what did is enough.
        let timeout = Task { try await Task.sleep(for: .seconds(30)); await ledger.cancel() }
        let ids = await reader.value
        timeout.cancel()
        await ledger.cancel()
        logger.info("read the finals ledger", metadata: ["answered": "\(ids.count)", "entries": "\(count)"])
        return ids
    }
}

extension AggregatorService {
    /// The event loop's state: every job's state machine and the deliveries held for it.
    struct Core {
        let service: AggregatorService
        var jobs: [String: JobAggregation] = [:]
        /// Inference jobs (AggregatorService+Inference.swift).
        var inferences: [String: InferenceJobState] = [:]
        var waitingInferencePartials: [String: [(InferencePartial, Int64)]] = [:]
        /// Tasks of open inference jobs whose publish failed: retried every tick.
        var unsentTasks: [String: [Message]] = [:]
        var held: [String: [(Delivery, Subscription)]] = [:]
        var waitingPartials: [String: [(PartialMessage, Int64, Message)]] = [:]
        var waitingDeadlines: [String: Int64] = [:]
        /// Task-failed notices that arrived before their job's open record (another queue).
        var waitingFailures: [String: (TaskFailure, Int64)] = [:]
        /// Jobs recovered after a restart: no deadline fires for them before this time.
        var replayUntil: [String: Int64] = [:]
        /// Deadlines that arrived during a job's replay grace, fired by `tick` after it.
        var deferredDeadlines: Set<String> = []
        var closed: Set<String> = []
        var closedOrder: [String] = []
        /// A's statistics read from the store, by digest and partition (a few matrices are hot).
        var statisticsCache: [String: ChunkedOperand.Statistics] = [:]
        /// Open records waiting for their matrix's checksums, by cache key.
        var pendingOpens: [String: [(OpenRecord, Delivery, Subscription)]] = [:]
        /// Jobs whose open record waits in `pendingOpens`: their inputs are kept, never dropped.
        var opening: Set<String> = []
        /// Final outputs whose publish failed: retried every tick; their jobs' inputs stay held
        /// (unacknowledged) until one is confirmed, so a failure never loses the job.
        var unpublished: [String: FinalOutput] = [:]

        /// Sends an event to this loop (from work done off it).
        let post: @Sendable (Event) -> Void

        init(service: AggregatorService, post: @escaping @Sendable (Event) -> Void = { _ in }) {
            self.service = service
            self.post = post
        }

        var logger: Logger { service.logger }

        mutating func handle(_ event: Event) async {
            let now = service.wallClock()
            for (d, sub) in service.dueDeadlines.withLock({ due in defer { due.removeAll() }; return due }) {
                await deadline(d, sub, now)
            }
            await fireDueDeadlines(now)
            switch event {
            case .tick:
                await tick(now)
            case .delivery(.jobs, let d, let sub):
                await open(d, sub, now)
            case .delivery(.partials, let d, let sub):
                await partial(d, sub, now)
            case .delivery(.deadlines, let d, let sub):
                await deadline(d, sub, now)
            case .delivery(.finals, let d, let sub):
                // Our own finals, copied to the ledger: a job not open here (answered by an
                // aggregator before us) is remembered as closed.
                if case .string(let id)? = d.message.headers[Header.job], jobs[id] == nil, inferences[id] == nil,
                   !opening.contains(id) {
                    remember(id)
                }
                try? await sub.ack(d)
            case .finalPublished(let id):
                // A retried final can be confirmed twice; the job closes once.
                if jobs[id] != nil || inferences[id] != nil { await close(id) }
            case .finalFailed(let id, let output):
                unpublished[id] = output
            case .checksumsReady(let key, let result):
                await checksumsReady(key, result, now)
            }
        }

        mutating func open(_ d: Delivery, _ sub: Subscription, _ now: Int64) async {
            if d.message.kind == InferenceOpen.kind { return await openInference(d, sub, now) }
            let record: OpenRecord
            do {
                record = try OpenRecord(decoding: d.message)
            } catch {
                refuse(d.message, "invalid open record: \(error)")
                return await deadLetter(d, sub, Topology.jobsQueue, "invalid open record: \(error)")
            }
            let id = record.job.id
            Trace.mark(id, "agg.open")
            if closed.contains(id) {
                try? await sub.ack(d)
                return
            }
            if inferences[id] != nil {
                return await deadLetter(d, sub, Topology.jobsQueue, "job id \(id) is already an open inference job; ids must be unique")
            }
            if jobs[id] != nil || opening.contains(id) {
                // Redelivered (e.g. after a reconnect, with a new tag): hold the new copy too,
                // so the job stays recoverable until it closes.
                held[id, default: []].append((d.forAck, sub))
                return
            }
            if let key = checksumsPending(for: record) {
                // Its matrix's checksums are being built off the loop: the job opens when they
                // are ready; its partials and deadline wait, held, meanwhile.
                pendingOpens[key, default: []].append((record, d, sub))
                opening.insert(id)
                return
            }
            await finishOpen(record, d, sub, now)
        }

        /// Opens a decoded, new job whose checksums (if any) are at hand.
        mutating func finishOpen(_ record: OpenRecord, _ d: Delivery, _ sub: Subscription, _ now: Int64) async {
            let id = record.job.id
            opening.remove(id)
            let agg: JobAggregation
            do {
                let v = try verification(of: record)
                agg = try JobAggregation(record, statisticsA: v.statisticsA, statisticsX: v.statisticsX, verifier: v.verifier)
            } catch {
                refuse(d.message, "refused: \(error)")
                return await deadLetter(d, sub, Topology.jobsQueue, "refused open record: \(error)")
            }
            // Inference partials parked under this id are not this job's: they stay held (acked
            // when the job closes) but are never replayed.
            waitingInferencePartials[id] = nil
            jobs[id] = agg
            held[id, default: []].append((d.forAck, sub))
            noteReplay(id, d, now)
            service.counters.withLock { $0.opened += 1 }
            for (p, _, message) in waitingPartials.removeValue(forKey: id) ?? [] {
                var outcome = JobAggregation.PartialOutcome.accepted
                await apply(id) { agg in
                    let (o, actions) = agg.receive(p, nowMs: now)
                    outcome = o
                    return actions
                }
                // Its delivery stays held with the job's (acked when it closes); a refused one
                // still ends in sr.dead, with its reason.
                switch outcome {
                case .forged(let reason):
                    service.counters.withLock { $0.forgedPartials += 1 }
                    await deadLetterCopy(message, Topology.partialsQueue, reason)
                case .invalid(let reason):
                    await deadLetterCopy(message, Topology.partialsQueue, reason)
                case .accepted, .duplicate, .late:
                    break
                }
            }
            if let (failure, _) = waitingFailures.removeValue(forKey: id) {
                await failJob(failure, now)
            }
            if waitingDeadlines.removeValue(forKey: id) != nil {
                if inReplay(id, now) { deferredDeadlines.insert(id) } else { await apply(id) { $0.deadlineFired(nowMs: now) } }
            }
        }

        /// Tells whoever follows a refused job why (a `failed` final), when its record names a
        /// well-formed job id that is not already open or closed: the client stops waiting at
        /// once instead of at its timeout. Published like any final (retried until confirmed);
        /// the record itself is dead-lettered.
        func refuse(_ message: Message, _ reason: String) {
            guard case .string(let id)? = message.headers[Header.job], MatVecJob.isValidID(id),
                  jobs[id] == nil, inferences[id] == nil, !closed.contains(id) else { return }
            emit(.failed(job: id, of: 0, elapsedMs: 0, reason: reason))
        }

        /// A's statistics for a registered matrix, from the store (cached): computed there at
        /// `register` or by the producer before it published the job.
        mutating func storedStatistics(_ job: MatVecJob) throws -> ChunkedOperand.Statistics {
            let key = "\(job.matrix)|\(job.partitionA)"
            if let s = statisticsCache[key] { return s }
            guard let store = service.store else {
                throw WireError("job \(job.id) keeps A's statistics in the operand store, and this aggregator has none; start sraggregate with --store (or SR_STORE) on the producers' store")
            }
            guard let s = store.preparedStatistics(digest: job.matrix, partition: try PartitionVector(job.partitionA)) else {
                throw WireError("job \(job.id): matrix \(job.matrix) has no statistics for partition \(job.partitionA) in the store \(store.root); is SR_STORE the same directory (volume) for every role?")
            }
            if statisticsCache.count >= 64 { statisticsCache.removeAll() }
            statisticsCache[key] = s
            return s
        }

        mutating func partial(_ d: Delivery, _ sub: Subscription, _ now: Int64) async {
            if d.message.kind == InferencePartial.kind { return await inferencePartial(d, sub, now) }
            if d.message.kind == TaskFailure.kind { return await taskFailure(d, sub, now) }
            let p: PartialMessage
            do { p = try PartialMessage(decoding: d.message) } catch {
                return await deadLetter(d, sub, Topology.partialsQueue, "invalid partial: \(error)")
            }
            Trace.mark(p.job, "agg.partial \(p.task)")
            if closed.contains(p.job) {
                service.counters.withLock { $0.latePartials += 1 }
                try? await sub.ack(d)
                return
            }
            if inferences[p.job] != nil {
                return await deadLetter(d, sub, Topology.partialsQueue, "a mat-vec partial for inference job \(p.job)")
            }
            guard jobs[p.job] != nil else {
                // Its open record has not arrived yet (a different queue): keep it, held.
                waitingPartials[p.job, default: []].append((p, now, d.message))
                held[p.job, default: []].append((d.forAck, sub))
                return
            }
            var outcome = JobAggregation.PartialOutcome.accepted
            var refusedParity: [String] = []
            let svc = service
            await apply(p.job) { agg in
                let before = agg.refusedParity.count, forgedBefore = agg.forgedPartials
                let (o, actions) = agg.receive(p, nowMs: now)
                outcome = o
                // Parity results refused when this partial completed their mini-job (they were
                // taken earlier, with nothing yet to check them against): counted and logged here.
                if case .accepted = o, agg.forgedPartials > forgedBefore {
                    refusedParity = Array(agg.refusedParity.suffix(max(1, agg.refusedParity.count - before)))
                    svc.counters.withLock { $0.forgedPartials += agg.forgedPartials - forgedBefore }
                }
                return actions
            }
            for why in refusedParity {
                logger.error("refusing coded partials that decode to a wrong result — check the consumers", metadata: ["job.id": "\(p.job)", "reason": "\(why)"])
            }
            switch outcome {
            case .accepted:
                if jobs[p.job] != nil { held[p.job, default: []].append((d.forAck, sub)) } else { try? await sub.ack(d) }
            case .duplicate:
                service.counters.withLock { $0.duplicatePartials += 1 }
                // While the job is open a duplicate may be the only live copy (a redelivery after
                // a reconnect invalidates the earlier tag): hold it until the job closes.
                if jobs[p.job] != nil { held[p.job, default: []].append((d.forAck, sub)) } else { try? await sub.ack(d) }
            case .late:
                service.counters.withLock { $0.latePartials += 1 }
                try? await sub.ack(d)
            case .invalid(let reason):
                await deadLetter(d, sub, Topology.partialsQueue, reason)
            case .forged(let reason):
                service.counters.withLock { $0.forgedPartials += 1 }
                logger.error("refusing a wrong partial — check that consumer", metadata: ["job.id": "\(p.job)", "worker": "\(p.worker)"])
                await deadLetter(d, sub, Topology.partialsQueue, reason)
            }
        }

        mutating func deadline(_ d: Delivery, _ sub: Subscription, _ now: Int64) async {
            let m: DeadlineMessage
            do { m = try DeadlineMessage(decoding: d.message) } catch {
                return await deadLetter(d, sub, Topology.deadlinesQueue, "invalid deadline message: \(error)")
            }
            if closed.contains(m.job) {
                try? await sub.ack(d)
                return
            }
            held[m.job, default: []].append((d.forAck, sub))
            if inReplay(m.job, now) {
                deferredDeadlines.insert(m.job)
            } else if jobs[m.job] != nil {
                await apply(m.job) { $0.deadlineFired(nowMs: now) }
            } else if inferences[m.job] != nil {
                await applyInference(m.job, now) { $0.deadlineFired(nowMs: now) }
            } else {
                waitingDeadlines[m.job] = now
            }
        }

        mutating func tick(_ now: Int64) async {
            // Finals that failed go out again (their jobs close when one is confirmed).
            for (id, output) in unpublished {
                unpublished[id] = nil
                output.enqueue(with: self)
            }
            await retryUnsentTasks()
            for id in deferredDeadlines where !inReplay(id, now) {
                deferredDeadlines.remove(id)
                replayUntil[id] = nil
                if jobs[id] != nil {
                    await apply(id) { $0.deadlineFired(nowMs: now) }
                } else if inferences[id] != nil {
                    await applyInference(id, now) { $0.deadlineFired(nowMs: now) }
                }
            }
            let unknownGrace = service.configuration.unknownJobGrace.wholeMilliseconds
            let staleIDs = Set(waitingPartials.filter { $0.value.allSatisfy { $0.1 + unknownGrace < now } }.keys)
                .union(waitingInferencePartials.filter { $0.value.allSatisfy { $0.1 + unknownGrace < now } }.keys)
                .union(waitingDeadlines.filter { $0.value + unknownGrace < now }.keys)
                .union(waitingFailures.filter { $0.value.1 + unknownGrace < now }.keys)
            for id in staleIDs where !opening.contains(id) {
                if jobs[id] != nil || inferences[id] != nil {
                    // Parked inputs of the other kind under an open job's id: they stay held
                    // with the job's own inputs (acked when it closes), never replayed.
                    waitingPartials[id] = nil
                    waitingInferencePartials[id] = nil
                    waitingDeadlines[id] = nil
                    waitingFailures[id] = nil
                    continue
                }
                logger.warning("dropping inputs of a job that was never opened", metadata: ["job.id": "\(id)"])
                waitingPartials[id] = nil
                waitingInferencePartials[id] = nil
                waitingDeadlines[id] = nil
                waitingFailures[id] = nil
                for (d, s) in held.removeValue(forKey: id) ?? [] { try? await s.ack(d) }
            }
        }

        /// Runs `body` on job `id`'s state machine and carries out its actions.
        mutating func apply(_ id: String, _ body: (inout JobAggregation) -> [JobAggregation.Action]) async {
            guard var agg = jobs[id] else { return }
            let actions = body(&agg)
            jobs[id] = agg
            for action in actions {
                switch action {
                case .emit(var output):
                    output.verified = agg.verified
                    emit(output)
                case .close:
                    // The job closes (its inputs are acked) once its final output is confirmed:
                    // `Event.finalPublished`. Until then it only answers late inputs.
                    break
                case .layerDone(let layer):
                    // Best effort, through the same publisher task as outputs (never waited for).
                    service.outbox.push(PendingOutput(message: DoneMessage(job: id, layer: layer).encode(), routingKey: "",
                                                      job: id, status: .partial, log: "", metadata: [:], final: nil,
                                                      exchange: Topology.doneExchange))
                }
            }
        }

        /// Answers every job whose deadline + `safetyGrace` has passed by this clock and whose
        /// deadline message has not come, before any other event is handled: behind a backlog
        /// of partials, waiting for the event loop to reach the message would make the answer
        /// late by the backlog. A recovering job waits out its replay grace first. O(open jobs).
        mutating func fireDueDeadlines(_ now: Int64) async {
            let grace = service.configuration.safetyGrace.wholeMilliseconds
            let dueMatVec = jobs.filter { !$0.value.isClosed && now >= $0.value.job.deadlineMs &+ grace && !inReplay($0.key, now) }
            for (id, agg) in dueMatVec {
                localFiring(id, lateMs: now - agg.job.deadlineMs)
                await apply(id) { $0.deadlineFired(nowMs: now) }
            }
            let dueInference = inferences.filter {
                !$0.value.aggregation.isClosed && now >= $0.value.job.deadlineMs &+ grace && !inReplay($0.key, now)
            }
            for (id, state) in dueInference {
                localFiring(id, lateMs: now - state.job.deadlineMs)
                await applyInference(id, now) { $0.deadlineFired(nowMs: now) }
            }
        }

        /// Counted (and logged at debug: routine on a busy broker) when the local clock, not
        /// the deadline message, answers a job.
        func localFiring(_ id: String, lateMs: Int64) {
            service.counters.withLock { $0.safetyTimerFirings += 1 }
            logger.debug("deadline answered by the local clock before its message arrived",
                         metadata: ["job.id": "\(id)", "late_ms": "\(lateMs)"])
        }

        /// A redelivered open record means an earlier aggregator had the job: give its
        /// redelivered partials `replayGrace` to arrive before any deadline of the job fires.
        mutating func noteReplay(_ id: String, _ d: Delivery, _ now: Int64) {
            if d.redelivered { replayUntil[id] = now + service.configuration.replayGrace.wholeMilliseconds }
        }

        func inReplay(_ id: String, _ now: Int64) -> Bool { (replayUntil[id] ?? .min) > now }

        /// Forgets a finished job and acknowledges its inputs — only once its final output is confirmed.
        mutating func close(_ id: String) async {
            replayUntil[id] = nil
            deferredDeadlines.remove(id)
            jobs[id] = nil
            inferences[id] = nil
            unsentTasks[id] = nil
            remember(id)
            for (d, s) in held.removeValue(forKey: id) ?? [] { try? await s.ack(d) }
        }

        /// Queues the output for the publisher task, which logs one line once it is confirmed.
        func emit(_ output: OutputMessage) {
            var metadata: Logger.Metadata = [
                "resolution": "\(output.resolution)/\(output.of)", "elapsed_ms": "\(Int(output.elapsedMs))",
                "bound": "\(output.maxBound)",
            ]
            // A deadline fired by hand (`srproduce deadline`) before the job's own comes early.
            if let late = output.lateMs { metadata[late >= 0 ? "late_ms" : "early_ms"] = "\(Int(abs(late)))" }
            if let reason = output.reason { metadata["reason"] = "\(reason)" }
            Trace.mark(output.job, "agg.emit.r\(output.resolution)")
            publishOutput(output.encode(), routingKey: output.routingKey, job: output.job, status: output.status,
                          log: "refinement", metadata: metadata, final: output.status == .partial ? nil : .matVec(output))
        }

        /// The one way outputs of either job kind leave: queued for the publisher task (which
        /// publishes with confirm to sr.outputs, counts and logs one line).
        func publishOutput(_ message: Message, routingKey: String, job: String, status: OutputStatus,
                           log: Logger.Message, metadata: Logger.Metadata, final: FinalOutput?) {
            service.outbox.push(PendingOutput(message: message, routingKey: routingKey, job: job, status: status,
                                              log: log, metadata: metadata, final: final))
        }

        mutating func remember(_ id: String) {
            closed.insert(id)
            closedOrder.append(id)
            if closedOrder.count > 100_000 {
                closed.remove(closedOrder.removeFirst())
            }
        }

        /// Sends a copy of a held input to sr.dead (the delivery itself is acked with its job).
        func deadLetterCopy(_ message: Message, _ queue: String, _ reason: String) async {
            service.counters.withLock { $0.deadLettered += 1 }
            logger.warning("dead-lettering", metadata: ["queue": "\(queue)", "reason": "\(reason)"])
            do {
                try await DeadLetter.send(message, reason: reason, from: queue, on: service.transport)
            } catch {
                logger.error("could not dead-letter a copy", metadata: ["error": "\(error)"])
            }
        }

        func deadLetter(_ d: Delivery, _ sub: Subscription, _ queue: String, _ reason: String) async {
            service.counters.withLock { $0.deadLettered += 1 }
            logger.warning("dead-lettering", metadata: ["queue": "\(queue)", "reason": "\(reason)"])
            do {
                try await DeadLetter.send(d.message, reason: reason, from: queue, on: service.transport)
                try await sub.ack(d)
            } catch {
                logger.error("could not dead-letter (left unacked)", metadata: ["error": "\(error)"])
            }
        }
    }
}

extension Delivery {
    /// The delivery without its body: what the aggregator holds until a job closes (only the
    /// tag is needed to acknowledge), so held inputs do not keep every partial in memory twice.
    var forAck: Delivery {
        Delivery(message: Message(), exchange: exchange, routingKey: routingKey, redelivered: redelivered, tag: tag)
    }
}
