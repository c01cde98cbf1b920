// What the aggregator counts through swift-metrics (docs/OPERATIONS.md lists every metric), and
// the open notice a live view reads. The aggregator never bootstraps a backend: sraggregate does
// (`--metrics-port`); without one these are no-ops, and tests pass an in-memory factory.
import CoreMetrics
import SRAggregation
import SRProtocol
import SRRoleSupport
import SRTransport

/// The aggregator's metrics, made from one factory.
struct AggregatorMetrics: Sendable {
    let factory: any MetricsFactory
    let opened: Counter
    let openJobs: Gauge
    let partialsReceived: Counter
    let latePartials: Counter
    let duplicatePartials: Counter
    let forgedPartials: Counter
    let failedTasks: Counter
    let safetyTimerFirings: Counter
    let deadLettered: Counter

    init(factory: any MetricsFactory) {
        self.factory = factory
        opened = Counter(label: "sr_jobs_opened_total", factory: factory)
        openJobs = Gauge(label: "sr_jobs_open", factory: factory)
        partialsReceived = Counter(label: "sr_partials_received_total", factory: factory)
        latePartials = Counter(label: "sr_partials_dropped_total", dimensions: [("reason", "late")], factory: factory)
        duplicatePartials = Counter(label: "sr_partials_dropped_total", dimensions: [("reason", "duplicate")], factory: factory)
        forgedPartials = Counter(label: "sr_partials_dropped_total", dimensions: [("reason", "forged")], factory: factory)
        failedTasks = Counter(label: "sr_task_failures_total", factory: factory)
        safetyTimerFirings = Counter(label: "sr_safety_timer_firings_total", factory: factory)
        deadLettered = Counter(label: "sr_dead_letters_total", dimensions: [("role", "aggregator")], factory: factory)
    }

    /// One of the job table's counters.
    func count(_ counter: JobTable<Int>.Counter) {
        switch counter {
        case .opened: opened.increment()
        case .latePartial: latePartials.increment()
        case .duplicatePartial: duplicatePartials.increment()
        case .forgedPartials(let n): forgedPartials.increment(by: n)
        case .safetyTimerFiring: safetyTimerFirings.increment()
        case .failedTask: failedTasks.increment()
        }
    }

    /// An output the broker confirmed: `sr_refinements_total`; a new resolution's latency since
    /// the job's creation; a final's deadline hit or miss, and how late a deadline fired.
    func published(_ facts: OutputFacts, status: OutputStatus) {
        let kind = ("kind", facts.kind)
        Counter(label: "sr_refinements_total", dimensions: [kind, ("status", status.rawValue)], factory: factory).increment()
        // A deadline final repeats the last resolution; only new ones have a latency.
        if (status == .partial || status == .complete) && facts.resolution >= 1 {
            Timer(label: "sr_resolution_latency_seconds", dimensions: [kind, ("resolution", MetricLabels.resolution(facts.resolution))],
                  factory: factory).recordNanoseconds(Self.nanoseconds(milliseconds: facts.elapsedMs))
        }
        switch status {
        case .complete:
            Counter(label: "sr_deadline_hits_total", dimensions: [kind], factory: factory).increment()
        case .deadline:
            Counter(label: "sr_deadline_misses_total", dimensions: [kind, ("result", facts.resolution > 0 ? "partial" : "none")],
                    factory: factory).increment()
            // Fired by hand before the job's own deadline: early, counted as 0.
            if let late = facts.lateMs {
                Timer(label: "sr_deadline_lateness_seconds", dimensions: [kind], factory: factory)
                    .recordNanoseconds(Self.nanoseconds(milliseconds: max(0, late)))
            }
        case .partial, .failed:
            break
        }
    }

    /// `sr_tasks_outstanding{layer}` from the backlog (layers past the label cap summed) and
    /// `sr_jobs_open`.
    func backlog(_ backlog: TaskBacklog) {
        var byLabel: [String: Int] = [:]
        for (layer, n) in backlog.byLayer.enumerated() { byLabel[MetricLabels.layer(layer), default: 0] += n }
        for (label, n) in byLabel {
            Gauge(label: "sr_tasks_outstanding", dimensions: [("layer", label)], factory: factory).record(n)
        }
        openJobs.record(backlog.openJobs)
    }

    static func nanoseconds(milliseconds ms: Double) -> Int64 {
        guard ms.isFinite, ms > 0 else { return 0 }
        return ms >= 9e12 ? .max : Int64(ms * 1e6)
    }
}

/// What the metrics need of an output on its way out (PendingOutput).
struct OutputFacts: Sendable {
    /// `kind` label: matvec or infer.
    var kind: String
    /// The resolution reached (inference: the highest among the samples); 0: none.
    var resolution: Int
    var elapsedMs: Double
    var lateMs: Double?
}

extension AggregatorService.Core {
    /// Keeps the metrics and the task backlog in step with what the table did with `event`,
    /// and announces each job that opened (`open.<id>` on sr.outputs, best effort).
    mutating func observe(_ event: JobTableEvent<Int>, _ actions: [JobTableAction<Int>], _ now: Int64) {
        var opened = false, refused = false
        for action in actions {
            switch action {
            case .count(.opened): opened = true
            case .count(.latePartial), .count(.duplicatePartial), .count(.forgedPartials), .deadLetter, .deadLetterCopy: refused = true
            default: break
            }
        }
        var changed = false
        // The event first: a job that opens with its deadline already parked is answered by
        // the same actions, and must be open in the backlog before that closes it.
        switch event {
        case .opened(let aggregation) where opened:
            let job = aggregation.job
            let coded = job.codedTasks ?? job.blockCount
            let perLayer = job.mode == .oneShot ? [job.blockCount]
                : job.layers.indices.map { $0 < (job.codedLayers ?? job.layers.count) ? coded : job.blockCount }
            backlog.open(job.id, tasksPerLayer: perLayer)
            announce(OpenedNotice(job: job.id, of: job.resolutionCount, deadline: job.deadline,
                                  elapsedMs: Double(now - job.createdMs)))
            changed = true
        case .inferenceOpenRecord(let job, _, _, _) where opened:
            // The first resolution of the rule's ladder came from the producer, blockSize samples
            // a task (resolution 1 unless the rule skips it).
            let first = (try? job.rule().ladder(resolutions: job.resolutions).first) ?? 1
            backlog.open(job.id, tasksPerLayer: [Int](repeating: 0, count: max(0, first - 1))
                         + [(job.samples + job.blockSize - 1) / max(1, job.blockSize)])
            announce(OpenedNotice(job: job.id, of: job.resolutions, deadline: job.deadline,
                                  elapsedMs: Double(now - job.createdMs)))
            changed = true
        case .partial(let p, _, _):
            service.metrics.partialsReceived.increment()
            if !refused { backlog.answered(p.job, layer: p.mode == .oneShot ? 0 : p.layer); changed = true }
        case .inferencePartial(let p, _):
            service.metrics.partialsReceived.increment()
            if !refused { backlog.answered(p.job, layer: p.resolution - 1); changed = true }
        default:
            break
        }
        for action in actions {
            switch action {
            case .publishTasks(let id, let tasks):
                // Inference resolutions ≥ 2: the aggregator publishes them.
                for task in tasks {
                    guard let r = task.headers[Header.resolution]?.intValue else { continue }
                    backlog.add(id, layer: Int(r) - 1, count: 1)
                }
                changed = true
            case .emit(.matVec(let o)):
                if o.status == .partial { backlog.completed(o.job, layers: o.resolution) } else { backlog.close(o.job) }
                changed = true
            case .emit(.inference(let o)):
                if o.status != .partial { backlog.close(o.job) }
                changed = true
            default:
                break
            }
        }
        if changed { service.metrics.backlog(backlog) }
    }

    /// Queues a job's open notice behind the outputs already queued (not counted, not logged).
    func announce(_ notice: OpenedNotice) {
        service.outbox.push(PendingOutput(message: notice.encode(), routingKey: notice.routingKey, job: notice.job,
                                          status: .partial, log: "", metadata: [:], final: nil, isOutput: false))
    }
}
