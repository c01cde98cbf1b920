// The embedded broker behind InMemoryTransport: RabbitMQ 3.x classic-queue semantics (routing,
// priorities, prefetch, acks, redelivery, TTL, dead-lettering, x-expires) in one process.
import Synchronization

/// One in-process "RabbitMQ node". Every `InMemoryTransport` made on it is a connection to it,
/// so producers, consumers and aggregator in one process share its exchanges and queues, and
/// closing one transport is how a consumer "dies" (its unacked deliveries are redelivered).
///
/// Operations take one lock and never block inside it; a publish returns once the message is in
/// its queues (that is the confirm). Expiry and x-expires run on timer tasks owned by the broker,
/// sleeping on the injected clock; `shutdown()` cancels them.
public final class InMemoryBroker: Sendable {
    private let clock: BrokerClock
    private let state: Mutex<BrokerState>

    /// A broker on the continuous clock.
    public convenience init() { self.init(clock: ContinuousClock()) }

    /// A broker whose TTLs and x-expires run on `clock`.
    public init<C: Clock<Duration>>(clock: C) {
        self.clock = BrokerClock(clock)
        state = Mutex(BrokerState())
    }

    deinit { shutdown() }

    /// Stops the broker: cancels its timers, finishes every subscription's deliveries (without
    /// error: this is a deliberate stop), drops all messages; every later operation of every
    /// transport on it throws `.closed`. Calling it again does nothing.
    public func shutdown() {
        perform { state, op in state.shutdown(&op) }
    }

    // MARK: Used by InMemoryTransport

    func openConnection() -> UInt64 {
        perform { state, _ in state.openConnection() }
    }

    func closeConnection(_ id: UInt64) {
        perform { state, op in state.closeConnection(id, &op) }
    }

    func cancel(consumer id: UInt64) {
        perform { state, op in state.cancel(consumer: id, &op) }
    }

    /// For tests: whether the queue exists, without counting as a use of it (x-expires).
    func queueExists(_ name: String) -> Bool {
        perform { state, _ in state.queues[name] != nil }
    }

    /// Runs one operation under the lock, then dispatches what it touched; streams it ended are
    /// finished after the lock is released, because their termination handlers call back in.
    func perform<R: Sendable, E: Error>(_ body: (BrokerState, inout BrokerOperation) throws(E) -> R) throws(E) -> R {
        let (result, finished) = state.withLock { state in
            var op = BrokerOperation(now: clock.now(), broker: self)
            let result: Result<R, E>
            do throws(E) { result = .success(try body(state, &op)) } catch { result = .failure(error) }
            if !state.isShutDown { state.finish(&op) }
            return (result, op.finished)
        }
        for continuation in finished { continuation.finish() }
        return try result.get()
    }

    /// Starts a timer task that runs `fire` as an operation once the clock reaches `deadline`.
    /// It wakes just after the deadline because a message expires when strictly past it.
    /// The queue that owns the task cancels it when it is replaced, the queue goes, or the
    /// broker shuts down; the task does not keep the broker alive.
    func startTimer(at deadline: Duration,
                    _ fire: @escaping @Sendable (BrokerState, inout BrokerOperation) -> Void) -> Task<Void, Never> {
        let sleep = clock.sleep
        return Task { [weak self] in
            do { try await sleep(deadline + .nanoseconds(1)) } catch { return }
            self?.perform { state, op in
                if !state.isShutDown { fire(state, &op) }
            }
        }
    }
}
