// The aggregator role: job opens, partials and deadlines in; refinements out (one log line
// each). The jobs' bookkeeping is the pure `JobTable` (SRAggregation); this loop decodes inputs
// into its events and performs its actions. Inputs stay unacknowledged until their job's final
// output is confirmed, so a crashed aggregator loses nothing: on restart the broker redelivers
// them and the state rebuilds.
import SRAggregation
import SRCore
import SRProtocol
import SRRoleSupport
import SRStore
import SRTransport
import CoreMetrics
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
        /// Where the aggregator's metrics go (docs/OPERATIONS.md); default: the process's
        /// bootstrapped backend (none: no-ops).
        public var metrics: any MetricsFactory = MetricsSystem.factory
        /// How often the depth of the topology's queues is sampled into `sr_queue_messages`;
        /// nil (default): never.
        public var queueSampling: Duration?
        public init() {}
    }

    enum Source: Sendable { case jobs, partials, deadlines, finals }
    enum Event: Sendable {
        case delivery(Source, Delivery, Subscription)
        case tick
        /// The publisher task got the broker's confirm for job's final output: close it.
        case finalPublished(String)
        /// The final output could not be published: retry it (the job's inputs stay held).
        case finalFailed(String, JobOutput)
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
    let metrics: AggregatorMetrics

    public init(transport: any Transport, store: OperandStore? = nil, configuration: Configuration = .init(), logger: Logger,
                wallClock: @escaping @Sendable () -> Int64 = WallClock.nowMs) {
        self.transport = transport
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.wallClock = wallClock
        self.metrics = AggregatorMetrics(factory: configuration.metrics)
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
                if let every = configuration.queueSampling {
                    let sampler = QueueDepthSampler(
                        queues: [Topology.tasksQueue, Topology.partialsQueue, Topology.jobsQueue, Topology.deadlinesQueue, Topology.deadQueue],
                        interval: every, transport: transport, factory: configuration.metrics)
                    group.addTask { await sampler.run() }
                }
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
    /// A job's final output, kept until the broker confirms it (retried on failure).
    typealias FinalOutput = JobOutput

    /// The event loop's state: the job table (every job's lifecycle, pure) and the deliveries
    /// it holds, by handle. The loop decodes inputs into the table's events and performs the
    /// actions the table returns; the table never sees a delivery or the transport.
    struct Core {
        let service: AggregatorService
        var table: JobTable<Int>
        /// Deliveries the table knows by handle; held ones without their body (`forAck`).
        var deliveries: [Int: (Delivery, Subscription)] = [:]
        var nextHandle = 0
        /// A's statistics read from the store, by digest and partition (a few matrices are hot).
        var statisticsCache: [String: ChunkedOperand.Statistics] = [:]
        /// Tasks of open jobs not answered yet, by layer (`sr_tasks_outstanding`).
        var backlog = TaskBacklog()

        /// Sends an event to this loop (from work done off it).
        let post: @Sendable (Event) -> Void

        init(service: AggregatorService, post: @escaping @Sendable (Event) -> Void = { _ in }) {
            self.service = service
            self.post = post
            let c = service.configuration
            table = JobTable(configuration: .init(safetyGraceMs: c.safetyGrace.wholeMilliseconds,
                                                  unknownJobGraceMs: c.unknownJobGrace.wholeMilliseconds,
                                                  replayGraceMs: c.replayGrace.wholeMilliseconds))
        }

        var logger: Logger { service.logger }

        mutating func remember(_ id: String) { table.remember(id) }

        mutating func handle(_ event: Event) async {
            let now = service.wallClock()
            // Deadline messages first: behind a backlog of partials they would fire late.
            for (d, sub) in service.dueDeadlines.withLock({ due in defer { due.removeAll() }; return due }) {
                await deliver(d, sub, now) { h in Self.deadlineEvent(d, h) }
            }
            switch event {
            case .tick:
                await run(.tick, now)
            case .delivery(.jobs, let d, let sub):
                await deliver(d, sub, now) { h in Self.openEvent(d, h) }
            case .delivery(.partials, let d, let sub):
                await deliver(d, sub, now) { h in Self.partialEvent(d, h) }
            case .delivery(.deadlines, let d, let sub):
                await deliver(d, sub, now) { h in Self.deadlineEvent(d, h) }
            case .delivery(.finals, let d, let sub):
                await deliver(d, sub, now) { h in
                    if case .string(let id)? = d.message.headers[Header.job] { return .ledgerEntry(job: id, h) }
                    return .ledgerEntry(job: nil, h)
                }
            case .finalPublished(let id):
                await run(.finalConfirmed(job: id), now)
            case .finalFailed(let id, let output):
                await run(.finalFailed(job: id, output), now)
            case .checksumsReady(let key, let result):
                switch result {
                case .success(let c):
                    service.rememberChecksums(c, key)
                    await run(.checksumsReady(key: key, failure: nil), now)
                case .failure(let error):
                    await run(.checksumsReady(key: key, failure: "\(error)"), now)
                }
            }
        }

        /// Gives the delivery a handle, hands the table its event, and keeps only what
        /// acknowledging needs of a delivery the table holds (an open record waiting for its
        /// checksums stays whole: if they cannot be built, it is dead-lettered).
        mutating func deliver(_ d: Delivery, _ sub: Subscription, _ now: Int64,
                              _ event: (Int) -> JobTableEvent<Int>) async {
            let h = nextHandle
            nextHandle &+= 1
            deliveries[h] = (d, sub)
            await run(event(h), now)
            if deliveries[h] != nil, !table.awaitsChecksums(h) { deliveries[h] = (d.forAck, sub) }
        }

        static func openEvent(_ d: Delivery, _ h: Int) -> JobTableEvent<Int> {
            if d.message.kind == InferenceOpen.kind {
                do {
                    let record = try InferenceOpen(decoding: d.message)
                    return .inferenceOpenRecord(record.job, try record.job.rule(), h, redelivered: d.redelivered)
                } catch {
                    return .invalid(h, queue: Topology.jobsQueue, reason: "invalid inference open record: \(error)")
                }
            }
            do {
                let record = try OpenRecord(decoding: d.message)
                Trace.mark(record.job.id, "agg.open")
                return .openRecord(record, h, redelivered: d.redelivered)
            } catch {
                var id: String?
                if case .string(let named)? = d.message.headers[Header.job] { id = named }
                return .invalidOpenRecord(h, job: id, reason: "\(error)")
            }
        }

        static func deadlineEvent(_ d: Delivery, _ h: Int) -> JobTableEvent<Int> {
            do {
                let m = try DeadlineMessage(decoding: d.message)
                return .deadline(job: m.job, h, issued: m.deadline)
            } catch {
                return .invalidDeadline(h, reason: "invalid deadline message: \(error)")
            }
        }

        static func partialEvent(_ d: Delivery, _ h: Int) -> JobTableEvent<Int> {
            if d.message.kind == InferencePartial.kind {
                do { return .inferencePartial(try InferencePartial(decoding: d.message), h) } catch {
                    return .invalid(h, queue: Topology.partialsQueue, reason: "invalid inference partial: \(error)")
                }
            }
            if d.message.kind == TaskFailure.kind {
                do { return .taskFailure(try TaskFailure(decoding: d.message), h) } catch {
                    return .invalid(h, queue: Topology.partialsQueue, reason: "invalid task failure: \(error)")
                }
            }
            do {
                let p = try PartialMessage(decoding: d.message)
                Trace.mark(p.job, "agg.partial \(p.task)")
                return .partial(p, h, message: d.message)
            } catch {
                return .invalid(h, queue: Topology.partialsQueue, reason: "invalid partial: \(error)")
            }
        }

        /// Hands the table an event and performs its actions.
        mutating func run(_ event: JobTableEvent<Int>, _ now: Int64) async {
            let actions = table.handle(event, now: now)
            observe(event, actions, now)
            await perform(actions, now)
        }

        /// Performs the table's actions in order; those that answer the table (verification,
        /// failed publishes) hand it their result at once.
        mutating func perform(_ actions: [JobTableAction<Int>], _ now: Int64) async {
            for action in actions {
                switch action {
                case .ack(let h):
                    if let (d, sub) = deliveries.removeValue(forKey: h) { try? await sub.ack(d) }
                case .deadLetter(let h, let queue, let reason):
                    if let (d, sub) = deliveries.removeValue(forKey: h) { await deadLetter(d, sub, queue, reason) }
                case .deadLetterCopy(let message, let queue, let reason):
                    await deadLetterCopy(message, queue, reason)
                case .verify(let record, let mayWait):
                    if mayWait, let key = checksumsNeeded(for: record) {
                        await run(.checksumsNeeded(job: record.job.id, key: key), now)
                    } else {
                        await run(verified(record), now)
                    }
                case .buildChecksums(let key, let job):
                    buildChecksums(key, job)
                case .emit(let output):
                    switch output {
                    case .matVec(let o): emit(o)
                    case .inference(let o): emit(o)
                    }
                case .publishDone(let id, let layer):
                    // Best effort, through the same publisher task as outputs (never waited for).
                    service.outbox.push(.notice(DoneMessage(job: id, layer: layer).encode(), job: id,
                                                exchange: Topology.doneExchange, routingKey: ""))
                case .publishProgress(let progress):
                    service.outbox.push(.notice(progress.encode(), job: progress.job,
                                                exchange: Topology.outputsExchange, routingKey: progress.routingKey))
                case .publishTasks(let id, let tasks):
                    await publishTasks(id, tasks, now)
                case .retryTasks(let id, let tasks):
                    var left = tasks[...]
                    while let t = left.first, await send(t, job: id) { left = left.dropFirst() }
                    if !left.isEmpty { await run(.tasksUnsent(job: id, Array(left)), now) }
                case .count(let counter):
                    service.counters.withLock { c in
                        switch counter {
                        case .opened: c.opened += 1
                        case .latePartial: c.latePartials += 1
                        case .duplicatePartial: c.duplicatePartials += 1
                        case .forgedPartials(let n): c.forgedPartials += n
                        case .safetyTimerFiring: c.safetyTimerFirings += 1
                        case .failedTask: c.failedTasks += 1
                        }
                    }
                    service.metrics.count(counter)
                case .log(let level, let message, let metadata):
                    let level: Logger.Level = switch level {
                    case .debug: .debug
                    case .info: .info
                    case .warning: .warning
                    case .error: .error
                    }
                    logger.log(level: level, "\(message)", metadata: metadata.mapValues { .string($0) })
                }
            }
        }

        /// The table's `.opened` or `.refused` for a record whose checksums (if any) are at hand.
        mutating func verified(_ record: OpenRecord) -> JobTableEvent<Int> {
            do {
                let v = try verification(of: record)
                return .opened(try JobAggregation(record, statisticsA: v.statisticsA, statisticsX: v.statisticsX,
                                                  verifier: v.verifier))
            } catch {
                return .refused(job: record.job.id, reason: "\(error)")
            }
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
                          log: "refinement", metadata: metadata, final: output.status == .partial ? nil : .matVec(output),
                          facts: OutputFacts(kind: "matvec", resolution: output.resolution, elapsedMs: output.elapsedMs, lateMs: output.lateMs))
        }

        /// The one way outputs of either job kind leave: queued for the publisher task (which
        /// publishes with confirm to sr.outputs, counts and logs one line).
        func publishOutput(_ message: Message, routingKey: String, job: String, status: OutputStatus,
                           log: Logger.Message, metadata: Logger.Metadata, final: FinalOutput?, facts: OutputFacts? = nil) {
            service.outbox.push(PendingOutput(message: message, routingKey: routingKey, job: job, status: status,
                                              log: log, metadata: metadata, final: final, facts: facts))
        }

        /// Sends a copy of a held input to sr.dead (the delivery itself is acked with its job).
        func deadLetterCopy(_ message: Message, _ queue: String, _ reason: String) async {
            service.counters.withLock { $0.deadLettered += 1 }
            service.metrics.deadLettered.increment()
            logger.warning("dead-lettering", metadata: ["queue": "\(queue)", "reason": "\(reason)"])
            do {
                try await DeadLetter.send(message, reason: reason, from: queue, on: service.transport)
            } catch {
                logger.error("could not dead-letter a copy", metadata: ["error": "\(error)"])
            }
        }

        func deadLetter(_ d: Delivery, _ sub: Subscription, _ queue: String, _ reason: String) async {
            service.counters.withLock { $0.deadLettered += 1 }
            service.metrics.deadLettered.increment()
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
