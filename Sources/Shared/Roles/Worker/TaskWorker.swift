// The consumer role: takes tasks (mat-vec chunk products or inference samples) by priority,
// skips dead work, computes, publishes the partial with a confirm, then acks. Stateless with respect to jobs; any replica can die.
import SRCoding
import SRRoleSupport
import SRCore
import SRProtocol
import SRStore
import SRTransport
import CoreMetrics
import Logging
import Synchronization
import ServiceLifecycle

/// Counters a worker keeps (read by tests, the demo and metrics).
public struct WorkerCounters: Sendable {
    public var computed = 0
    public var skippedPastDeadline = 0
    /// Coded tasks dropped unread because their layer was already decoded (a done notice).
    public var droppedDecoded = 0
    /// Done notices received.
    public var doneNotices = 0
    public var deadLettered = 0
    /// (job, task) in the order they were computed: lets tests assert layer-priority order.
    public var order: [String] = []
}

public final class TaskWorker: Service, Sendable {
    public struct Configuration: Sendable {
        /// Unacknowledged tasks held at once (1–2 keeps layer priority meaningful under backlog).
        public var prefetch: Int = 1
        /// Bytes of prepared operands cached (default 1 GiB).
        public var cacheBytes: Int = 1 << 30
        /// Name in partials and logs.
        public var name: String = "worker"
        /// Keep the computed-task order in the counters (tests, demo).
        public var recordOrder: Bool = false
        /// Scheduling priority of the kernel thread (default niceness 10): messaging threads —
        /// this worker's, and a broker's or aggregator's on the same cores — take the CPU first,
        /// so a hop never waits behind a kernel's time slice (measured: docs/BENCHMARKS.md).
        public var kernelPriority: ThreadPriority = .nice(10)
        /// Where the worker's metrics go (docs/OPERATIONS.md); default: the process's bootstrapped
        /// backend (none: no-ops).
        public var metrics: any MetricsFactory = MetricsSystem.factory
        /// How often sr.tasks' depth is sampled into `sr_queue_messages`; nil (default): never.
        public var queueSampling: Duration?
        public init() {}
    }

    let transport: any Transport
    let computer: TaskComputer
    let inference: InferenceComputer
    let configuration: Configuration
    let logger: Logger
    let blocking: BlockingWork
    let counters = Mutex(WorkerCounters())
    /// Coded layers the aggregator has decoded (done notices on sr.done).
    let finished = Mutex(FinishedMiniJobs())
    let listening = Mutex(false)
    let metrics: WorkerMetrics

    /// Whether this worker hears done notices (its queue on sr.done is bound and consumed).
    public var isListeningForDoneNotices: Bool { listening.withLock { $0 } }
    let wallClock: @Sendable () -> Int64

    public init(transport: any Transport, store: OperandStore, configuration: Configuration, logger: Logger,
                wallClock: @escaping @Sendable () -> Int64 = WallClock.nowMs) {
        self.transport = transport
        let cache = PlaneCache(capacityBytes: configuration.cacheBytes) { e in
            let mib = { (b: Int) in "\((b + (1 << 20) - 1) >> 20) MiB" }
            let advice = "prepared again on its next use; give the consumer more cache (srconsume --cache-mb) if this repeats"
            if let evicted = e.evicted {
                logger.warning("operand cache full: evicted one operand to make room for another",
                               metadata: ["advice": "\(advice)", "evicted": "\(evicted)", "evicted_size": "\(mib(e.evictedBytes))",
                                          "needed": "\(e.needed)", "needed_size": "\(mib(e.neededBytes))", "cache": "\(mib(e.capacityBytes))"])
            } else {
                logger.warning("operand larger than the whole cache, not kept",
                               metadata: ["advice": "\(advice)", "needed": "\(e.needed)", "needed_size": "\(mib(e.neededBytes))", "cache": "\(mib(e.capacityBytes))"])
            }
        }
        self.computer = TaskComputer(store: store, cache: cache)
        self.inference = InferenceComputer(store: store, cache: cache)
        self.configuration = configuration
        self.logger = logger
        self.blocking = BlockingWork(label: "sr.worker.\(configuration.name)", priority: configuration.kernelPriority)
        self.wallClock = wallClock
        self.metrics = WorkerMetrics(factory: configuration.metrics)
    }

    /// Loads and prepares a registered matrix before tasks need it.
    public func preload(digest: String, partitionA: [Int], partitionX: [Int], code: MiniJobCode? = nil, blockRows: Int? = nil) async throws {
        let computer = self.computer
        try await blocking.run {
            try computer.preload(digest: digest, partitionA: partitionA, partitionX: partitionX, code: code, blockRows: blockRows)
        }
    }

    public var snapshot: WorkerCounters { counters.withLock { $0 } }

    public func run() async throws {
        try await Topology.declare(on: transport)
        // Done notices are followed beside the tasks (re-subscribing after a reconnect: the
        // notice queue is exclusive, so it does not survive the connection).
        let listener = Task { await self.followDoneNotices() }
        defer { listener.cancel() }
        let sampler = configuration.queueSampling.map { every in
            QueueDepthSampler(queues: [Topology.tasksQueue], interval: every, transport: transport, factory: configuration.metrics)
        }
        let sampling = sampler.map { s in Task { await s.run() } }
        defer { sampling?.cancel() }
        let subscription = try await transport.subscribe(queue: Topology.tasksQueue, prefetch: configuration.prefetch)
        logger.info("consuming", metadata: ["queue": "\(Topology.tasksQueue)", "prefetch": "\(configuration.prefetch)"])
        // On graceful shutdown: stop taking tasks; the one in hand finishes (publish + ack)
        // before the subscription is cancelled — cancelling returns unacked deliveries to the
        // queue, which would have the task computed twice.
        let phase = Mutex((busy: false, stopping: false))
        await withGracefulShutdownHandler {
            do {
                for try await delivery in subscription.deliveries {
                    let stop = phase.withLock { p -> Bool in
                        if !p.stopping { p.busy = true }
                        return p.stopping
                    }
                    if stop { break }   // not started: it goes back to the queue
                    await handle(delivery, subscription)
                    if phase.withLock({ p -> Bool in p.busy = false; return p.stopping }) { break }
                }
            } catch {
                logger.error("task stream failed", metadata: ["error": "\(error)"])
            }
        } onGracefulShutdown: {
            let idle = phase.withLock { p -> Bool in
                p.stopping = true
                return !p.busy
            }
            // Idle: nothing in hand, so end the wait for the next delivery now.
            if idle { Task { await subscription.cancel() } }
        }
        await subscription.cancel()
    }

    /// An exclusive queue of this worker's own, bound to the sr.done fanout.
    func subscribeDoneNotices() async throws -> Subscription {
        let queue = try await transport.declare(QueueSpec(name: "", durable: false, exclusive: true, autoDelete: true))
        try await transport.bind(BindingSpec(queue: queue, exchange: Topology.doneExchange, routingKey: Topology.doneRoute.routingKey))
        return try await transport.subscribe(queue: queue, prefetch: 0)
    }

    /// Subscribes to done notices and records them, again after every loss (backing off up
    /// to 10 s); best effort — without them, tasks of decoded layers are computed for nothing.
    func followDoneNotices() async {
        var delay = Duration.milliseconds(200)
        var warned = false
        while !Task.isCancelled {
            do {
                let notices = try await subscribeDoneNotices()
                listening.withLock { $0 = true }
                delay = .milliseconds(200)
                warned = false
                await withTaskCancellationHandler {
                    do {
                        for try await d in notices.deliveries {
                            if let done = try? DoneMessage(decoding: d.message) {
                                finished.withLock { $0.insert(job: done.job, layer: done.layer) }
                                counters.withLock { $0.doneNotices += 1 }
                                metrics.doneNotices.increment()
                            }
                            try? await notices.ack(d)
                        }
                    } catch {
                        logger.debug("done notices interrupted", metadata: ["error": "\(error)"])
                    }
                } onCancel: {
                    Task { await notices.cancel() }
                }
            } catch {
                if !warned { logger.warning("no done notices for now (coded tasks of decoded layers will be computed)", metadata: ["error": "\(error)"]) }
                warned = true
            }
            listening.withLock { $0 = false }
            guard !Task.isCancelled else { break }
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(10))
        }
    }

    /// A decoded task of either kind.
    enum Work: Sendable {
        case matVec(TaskMessage)
        case inference(InferenceTask)

        init(decoding message: Message) throws(WireError) {
            if message.kind == InferenceTask.kind {
                self = .inference(try InferenceTask(decoding: message))
            } else {
                self = .matVec(try TaskMessage(decoding: message))
            }
        }

        var job: String {
            switch self {
            case .matVec(let t): t.job
            case .inference(let t): t.job
            }
        }
        var task: String {
            switch self {
            case .matVec(let t): t.task
            case .inference(let t): t.task
            }
        }
        /// `kind` label of the task metrics.
        var metricKind: String {
            switch self {
            case .matVec: "matvec"
            case .inference: "infer"
            }
        }
        /// The 0-based layer (an inference task's resolution r is layer r − 1).
        var layer: Int {
            switch self {
            case .matVec(let t): t.layer
            case .inference(let t): t.resolution - 1
            }
        }
        var deadline: Deadline {
            switch self {
            case .matVec(let t): t.deadline
            case .inference(let t): t.deadline
            }
        }
    }

    func handle(_ delivery: Delivery, _ subscription: Subscription) async {
        let work: Work
        do {
            work = try Work(decoding: delivery.message)
        } catch {
            await deadLetter(delivery, subscription, reason: "undecodable task: \(error)")
            return
        }
        Trace.mark(work.job, "consumer.task \(work.task)")
        var log = logger
        log[metadataKey: "job.id"] = "\(work.job)"
        log[metadataKey: "task.id"] = "\(work.task)"
        if work.deadline.hasPassed(at: wallClock()) {
            counters.withLock { $0.skippedPastDeadline += 1 }
            metrics.skippedPastDeadline.increment()
            log.debug("skipped: past its deadline")
            try? await subscription.ack(delivery)
            return
        }
        if case .matVec(let t) = work, t.code != nil, finished.withLock({ $0.contains(job: t.job, layer: t.layer) }) {
            counters.withLock { $0.droppedDecoded += 1 }
            metrics.skippedDecoded.increment()
            log.debug("dropped: its coded layer is already decoded")
            try? await subscription.ack(delivery)
            return
        }
        do {
            let computer = self.computer, inference = self.inference, name = configuration.name
            let (partial, computeTime) = try await blocking.run { () throws -> (Message, Duration) in
                Trace.mark(work.job, "blocking.start \(work.task)")
                let clock = ContinuousClock()
                let start = clock.now
                switch work {
                case .matVec(let t): return (try computer.compute(t, worker: name).encode(), clock.now - start)
                case .inference(let t): return (try inference.compute(t, worker: name).encode(), clock.now - start)
                }
            }
            Trace.mark(work.job, "consumer.computed \(work.task)")
            try await transport.publish(partial, Topology.partialRoute)
            Trace.mark(work.job, "consumer.partial.confirmed \(work.task)")
            counters.withLock {
                $0.computed += 1
                if configuration.recordOrder { $0.order.append(work.task) }
            }
            metrics.computed(kind: work.metricKind, layer: work.layer, time: computeTime)
            let cache = computer.cache.statistics
            metrics.cache(hits: cache.hits, misses: cache.misses)
            try await subscription.ack(delivery)
        } catch {
            switch TaskFailureDisposition.of(error, redelivered: delivery.redelivered) {
            case .deadLetter(let reason):
                await deadLetter(delivery, subscription, reason: reason, failing: work)
            case .retry:
                log.warning("task not completed, requeued", metadata: ["error": "\(error)"])
                try? await subscription.reject(delivery, requeue: true)
            }
        }
    }

    /// Moves a task to sr.dead with `reason`; for a task whose job is known (`failing`), tells
    /// the aggregator too, so that the submitter learns why now instead of at the deadline.
    func deadLetter(_ delivery: Delivery, _ subscription: Subscription, reason: String, failing work: Work? = nil) async {
        // Counted once done: whoever reads the counter finds the notice and the dead letter sent.
        defer {
            counters.withLock { $0.deadLettered += 1 }
            metrics.deadLettered.increment()
        }
        logger.warning("dead-lettering a task", metadata: ["reason": "\(reason)"])
        if let work {
            let notice = TaskFailure(job: work.job, task: work.task, worker: configuration.name, reason: reason)
            do {
                try await transport.publish(notice.encode(), Topology.partialRoute)
            } catch {
                logger.warning("could not report the failed task to the aggregator (its deadline will answer the job)",
                               metadata: ["job.id": "\(work.job)", "error": "\(error)"])
            }
        }
        do {
            try await DeadLetter.send(delivery.message, reason: reason, from: Topology.tasksQueue, on: transport)
            try await subscription.ack(delivery)
        } catch {
            logger.error("could not dead-letter (left unacked)", metadata: ["error": "\(error)"])
        }
    }
}
