// The in-memory broker's notion of time: offsets from its creation on an injected Clock, so
// the broker is not generic over the clock and message expiry times are plain Durations.

struct BrokerClock: Sendable {
    /// Time since the broker was created.
    let now: @Sendable () -> Duration
    /// Sleeps until `now()` reaches the given offset; throws when the sleeping task is cancelled.
    let sleep: @Sendable (_ until: Duration) async throws -> Void

    init<C: Clock<Duration>>(_ clock: C) {
        let origin = clock.now
        now = { origin.duration(to: clock.now) }
        sleep = { deadline in try await clock.sleep(until: origin.advanced(by: deadline), tolerance: nil) }
    }
}
