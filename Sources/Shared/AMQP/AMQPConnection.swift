// One AMQP connection over rabbitmq-c, confined to a dedicated OS thread (AMQPConnectionLoop).
// Async callers queue commands (AMQPInbox); the thread runs them, reads every frame itself
// (deliveries, publisher confirms, closes), and reconnects with backoff when the broker goes
// away, re-declaring the topology, re-subscribing and re-publishing unconfirmed messages. The
// bookkeeping behind all that is AMQPConnectionState, a value tested without a broker.
import Foundation
import Logging
import SRTransport
import Synchronization

// MARK: - Public-facing (module-internal) handle

/// A connection to RabbitMQ, usable from any task. Every call is executed on the connection's
/// own thread, in submission order.
final class AMQPConnection: Sendable {
    let url: AMQPURL
    private let configuration: AMQPTransport.Configuration
    private let inbox: Inbox
    private let loop: Loop
    private let exited: ExitSignal
    private let nextSubscriptionID = Atomic<UInt64>(1)

    /// Connects (failing fast with a clear error) and starts the connection's thread.
    static func open(url: AMQPURL, role: String, configuration: AMQPTransport.Configuration,
                     topology: TopologyRecord, logger: Logger) async throws -> AMQPConnection {
        let connection = try AMQPConnection(url: url, role: role, configuration: configuration,
                                            topology: topology, logger: logger)
        try await withCheckedThrowingContinuation { (opened: CheckedContinuation<Void, any Error>) in
            let loop = connection.loop
            let thread = Thread { loop.run(opened: opened) }
            thread.name = "sr-amqp-\(role)"
            // rabbitmq-c decodes header tables recursively on this thread before we see them. A
            // content header fits one frame (frame_max 128 KiB below), so a hostile table nests
            // at most ~26 000 levels (5 bytes each): 64 MiB of stack (reserved, touched only as
            // used) holds that depth where 1 MiB did not (a segfault killed every consumer).
            thread.stackSize = 64 << 20
            thread.start()
        }
        return connection
    }

    private init(url: AMQPURL, role: String, configuration: AMQPTransport.Configuration,
                 topology: TopologyRecord, logger: Logger) throws {
        self.url = url
        self.configuration = configuration
        inbox = try Inbox()
        exited = ExitSignal()
        var logger = logger
        logger[metadataKey: "amqp.connection"] = "\(role)"
        loop = Loop(url: url, configuration: configuration, topology: topology, inbox: inbox,
                    exited: exited, logger: logger)
    }

    deinit {
        // Dropped without close(): still stop the thread (it holds no reference back to us).
        inbox.requestClose()
    }

    /// Reconnections after the first connect.
    var reconnections: Int { loop.reconnections.load(ordering: .relaxed) }

    func declare(_ exchange: ExchangeSpec) async throws {
        try await perform("declaring exchange '\(exchange.name)'") { try $0.declare(exchange) }
    }

    func declare(_ queue: QueueSpec) async throws -> String {
        try await perform("declaring queue '\(queue.name)'") { try $0.declare(queue) }
    }

    func bind(_ binding: BindingSpec) async throws {
        try await perform("binding queue '\(binding.queue)' to exchange '\(binding.exchange)'") { try $0.bind(binding) }
    }

    func messageCount(queue: String) async throws -> Int {
        try await perform("counting messages in queue '\(queue)'") { try $0.messageCount(queue: queue) }
    }

    /// Returns once the broker confirmed the message (a basic.ack for its sequence number). A
    /// message whose connection drops before the confirm is published again on the next one.
    func publish(_ message: Message, exchange: String, routingKey: String) async throws {
        let deadline = ContinuousClock.now + configuration.operationTimeout
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let completion = PublishCompletion { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
            submitPublish(Publication(message, exchange: exchange, routingKey: routingKey), deadline: deadline, completion)
        }
    }

    /// Publishes `batch` in order and returns once every message is confirmed. The messages go
    /// out back to back and their confirms are awaited together (pipelined): one round trip
    /// for the batch instead of one per message. Throws the first failure, after every message
    /// of the batch has been settled.
    func publish(_ batch: [Publication]) async throws {
        guard !batch.isEmpty else { return }
        let deadline = ContinuousClock.now + configuration.operationTimeout
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let waiter = BatchWaiter(count: batch.count) { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
            for p in batch { submitPublish(p, deadline: deadline, PublishCompletion(waiter.settle)) }
        }
    }

    private func submitPublish(_ p: Publication, deadline: ContinuousClock.Instant, _ completion: PublishCompletion) {
        let pending = PendingPublish(message: p.message, exchange: p.exchange, routingKey: p.routingKey,
                                     deadline: deadline, completion: completion)
        let job = PendingJob(what: "publishing to exchange '\(p.exchange)'", needsConnection: false, deadline: deadline,
                             command: Job(execute: { $0.publish(pending) }, fail: { completion.resume(throwing: $0) }))
        if !inbox.submit(job) { completion.resume(throwing: closedError) }
    }

    func subscribe(queue: String, prefetch: Int) async throws -> Subscription {
        guard prefetch >= 0 else {
            throw TransportError(.precondition, "prefetch must be 0 (unlimited) or more, got \(prefetch)")
        }
        let id = nextSubscriptionID.wrappingAdd(1, ordering: .relaxed).oldValue
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: Delivery.self, throwing: (any Error).self)
        // A consumer that stops iterating (its task cancelled, the stream dropped) cancels the
        // subscription, so its unacked deliveries go back to the queue.
        let inbox = self.inbox
        continuation.onTermination = { termination in
            if case .cancelled = termination {
                _ = inbox.submit(PendingJob(what: "cancelling a subscription", needsConnection: false, deadline: .now,
                                            command: Job(execute: { $0.cancelSubscription(id) }, fail: { _ in })))
            }
        }
        let subscriber = Subscriber(id: id, queue: queue, prefetch: prefetch, continuation: continuation)
        try await perform("subscribing to queue '\(queue)'") { try $0.subscribe(subscriber) }
        return Subscription(
            deliveries: stream,
            ack: { tag in try self.settle(id, tag, .ack) },
            reject: { tag, requeue in try self.settle(id, tag, requeue ? .requeue : .discard) },
            cancel: { await self.cancelSubscription(id) })
    }

    /// Graceful: waits (up to `closeTimeout`) for outstanding confirms, closes the connection,
    /// finishes every subscription's stream and joins the thread.
    func close() async {
        inbox.requestClose()
        await exited.wait()
    }

    // MARK: internals

    private var closedError: TransportError {
        TransportError(.closed, "the AMQP connection to \(url) is closed")
    }

    /// Returns once the thread has the ack (or reject) in its queue, ahead of anything submitted
    /// later: basic.ack has no reply, and the only failure worth reporting — a closed
    /// connection — is known here. This saves a thread round trip per message.
    private func settle(_ id: UInt64, _ tag: DeliveryTag, _ how: Settlement) throws {
        let job = PendingJob(what: "acknowledging a delivery", needsConnection: false, deadline: .now,
                             command: Job(execute: { $0.settle(id, tag, how) }, fail: { _ in }))
        if !inbox.submit(job) { throw closedError }
    }

    private func cancelSubscription(_ id: UInt64) async {
        _ = try? await perform("cancelling a subscription", needsConnection: false) { $0.cancelSubscription(id) }
    }

    private func perform<T: Sendable>(_ what: String, needsConnection: Bool = true,
                                      _ body: @escaping @Sendable (Loop) throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + configuration.operationTimeout
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = PendingJob(what: what, needsConnection: needsConnection, deadline: deadline,
                                 command: Job(execute: { loop in continuation.resume(returning: try body(loop)) },
                                              fail: { continuation.resume(throwing: $0) }))
            if !inbox.submit(job) { continuation.resume(throwing: closedError) }
        }
    }
}

/// Exchanges, queues and bindings declared so far, re-declared after a reconnect. Exclusive
/// queues (and bindings to them) are not recorded: they die with their connection.
final class TopologyRecord: Sendable {
    private struct State {
        var exchanges: [ExchangeSpec] = []
        var queues: [QueueSpec] = []
        var bindings: [BindingSpec] = []
    }
    private let state = Mutex(State())

    init() {}

    func record(_ exchange: ExchangeSpec) {
        state.withLock { s in
            if let i = s.exchanges.firstIndex(where: { $0.name == exchange.name }) { s.exchanges[i] = exchange } else { s.exchanges.append(exchange) }
        }
    }

    func record(_ queue: QueueSpec) {
        state.withLock { s in
            if let i = s.queues.firstIndex(where: { $0.name == queue.name }) { s.queues[i] = queue } else { s.queues.append(queue) }
        }
    }

    func record(_ binding: BindingSpec) {
        state.withLock { s in if !s.bindings.contains(binding) { s.bindings.append(binding) } }
    }

    var snapshot: (exchanges: [ExchangeSpec], queues: [QueueSpec], bindings: [BindingSpec]) {
        state.withLock { ($0.exchanges, $0.queues, $0.bindings) }
    }
}

