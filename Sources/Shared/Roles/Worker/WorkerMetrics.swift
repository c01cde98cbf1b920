// What a consumer counts through swift-metrics (docs/OPERATIONS.md lists every metric). The
// consumer never bootstraps a backend: srconsume does (`--metrics-port`); without one these are
// no-ops, and tests pass a factory that records in memory.
import CoreMetrics
import SRRoleSupport
import Synchronization

/// The consumer's metrics, made from one factory.
final class WorkerMetrics: Sendable {
    let factory: any MetricsFactory
    let skippedPastDeadline: Counter
    let skippedDecoded: Counter
    let deadLettered: Counter
    let doneNotices: Counter
    let cacheHits: Counter
    let cacheMisses: Counter
    /// The plane cache's hit and miss counts already reported (the cache counts; this reports
    /// the difference after each task).
    let reportedCache = Mutex((hits: 0, misses: 0))

    init(factory: any MetricsFactory) {
        self.factory = factory
        skippedPastDeadline = Counter(label: "sr_tasks_skipped_total", dimensions: [("reason", "past_deadline")], factory: factory)
        skippedDecoded = Counter(label: "sr_tasks_skipped_total", dimensions: [("reason", "layer_decoded")], factory: factory)
        deadLettered = Counter(label: "sr_dead_letters_total", dimensions: [("role", "consumer")], factory: factory)
        doneNotices = Counter(label: "sr_done_notices_total", factory: factory)
        cacheHits = Counter(label: "sr_operand_cache_hits_total", factory: factory)
        cacheMisses = Counter(label: "sr_operand_cache_misses_total", factory: factory)
    }

    /// A task computed and its partial confirmed: `sr_tasks_computed_total` and its compute
    /// time (the kernel thread's, store reads included) in `sr_task_compute_seconds`.
    func computed(kind: String, layer: Int, time: Duration) {
        let dimensions = [("kind", kind), ("layer", MetricLabels.layer(layer))]
        // The time first: whoever sees the count sees the time too.
        Timer(label: "sr_task_compute_seconds", dimensions: dimensions, factory: factory).recordNanoseconds(MetricLabels.nanoseconds(time))
        Counter(label: "sr_tasks_computed_total", dimensions: dimensions, factory: factory).increment()
    }

    /// Reports the cache's hits and misses since the last call.
    func cache(hits: Int, misses: Int) {
        let (newHits, newMisses) = reportedCache.withLock { seen -> (Int, Int) in
            defer { seen = (hits, misses) }
            return (max(0, hits - seen.hits), max(0, misses - seen.misses))
        }
        if newHits > 0 { cacheHits.increment(by: newHits) }
        if newMisses > 0 { cacheMisses.increment(by: newMisses) }
    }
}
