// Tells a late transport from a starved test process: CPU-bound tests running in parallel can
// hold every thread of the concurrency pool, delaying any async code, whatever the transport.
import Synchronization

/// Runs `body` while a task ticks every 5 ms, and returns the longest the ticks were held up
/// beyond their period: how long this process could not run async work. Timing checks allow
/// this much on top of their bound.
public func withStallMeter<T: Sendable>(_ body: () async throws -> T) async throws -> (result: T, worstStall: Duration) {
    let meter = StallMeter()
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await meter.tick() }
        defer { group.cancelAll() }
        let result = try await body()
        return (result, meter.worstStall())
    }
}

private final class StallMeter: Sendable {
    private let period = Duration.milliseconds(5)
    private let state = Mutex<(lastTick: ContinuousClock.Instant, worst: Duration)>((.now, .zero))

    func tick() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: period)
            let now = ContinuousClock.now
            state.withLock { s in
                s.worst = max(s.worst, now - s.lastTick - period)
                s.lastTick = now
            }
        }
    }

    /// Includes a stall still in progress, which no tick has seen yet.
    func worstStall() -> Duration {
        let now = ContinuousClock.now
        return state.withLock { s in max(s.worst, now - s.lastTick - period) }
    }
}
