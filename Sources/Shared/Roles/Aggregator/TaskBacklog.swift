// The aggregator's estimate of the task queue's depth per layer. sr.tasks is one priority queue
// and RabbitMQ reports one count for it, not one per priority; but the aggregator knows how many
// tasks each open job has per layer and which partials came back, which is the same per layer.

/// Tasks of open jobs that no partial has answered yet, by layer (0-based; an inference task of
/// resolution r is layer r − 1): queued, being computed, or their partial on its way. A job's
/// tasks leave when it is answered (its final is out) and a layer's when it is complete (a coded
/// layer's extra tasks are then worthless). Value type, no I/O; O(1) per event except `close`
/// and `completed` (O(layers)).
struct TaskBacklog: Sendable {
    /// Unanswered tasks per layer, per open job.
    private(set) var jobs: [String: [Int]] = [:]
    /// Unanswered tasks per layer, all open jobs together.
    private(set) var byLayer: [Int] = []

    /// A job opened with `tasksPerLayer[ℓ]` tasks in layer ℓ (a reopened job starts over).
    mutating func open(_ job: String, tasksPerLayer: [Int]) {
        close(job)
        jobs[job] = tasksPerLayer.map { max(0, $0) }
        for (layer, n) in tasksPerLayer.enumerated() { change(layer, by: max(0, n)) }
    }

    /// `count` more tasks of `layer` were published for an open job (inference resolutions ≥ 2).
    mutating func add(_ job: String, layer: Int, count: Int) {
        guard layer >= 0, count > 0, var remaining = jobs[job] else { return }
        if remaining.count <= layer { remaining += Array(repeating: 0, count: layer + 1 - remaining.count) }
        remaining[layer] += count
        jobs[job] = remaining
        change(layer, by: count)
    }

    /// A partial answered one task of `layer` (never below zero: a duplicate is not counted twice).
    mutating func answered(_ job: String, layer: Int) {
        guard layer >= 0, var remaining = jobs[job], layer < remaining.count, remaining[layer] > 0 else { return }
        remaining[layer] -= 1
        jobs[job] = remaining
        change(layer, by: -1)
    }

    /// Layers `0..<layers` of `job` are complete: their remaining (coded, extra) tasks are dropped.
    mutating func completed(_ job: String, layers: Int) {
        guard var remaining = jobs[job] else { return }
        for layer in 0..<min(layers, remaining.count) where remaining[layer] > 0 {
            change(layer, by: -remaining[layer])
            remaining[layer] = 0
        }
        jobs[job] = remaining
    }

    /// The job is answered: none of its tasks matters any more.
    mutating func close(_ job: String) {
        guard let remaining = jobs.removeValue(forKey: job) else { return }
        for (layer, n) in remaining.enumerated() where n > 0 { change(layer, by: -n) }
    }

    var openJobs: Int { jobs.count }

    private mutating func change(_ layer: Int, by delta: Int) {
        if byLayer.count <= layer { byLayer += Array(repeating: 0, count: layer + 1 - byLayer.count) }
        byLayer[layer] += delta
    }
}
