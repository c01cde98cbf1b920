// The transport abstraction: the in-memory broker (embedded default) and AMQP over
// rabbitmq-c implement it and pass the same behavioural tests.

/// A message broker connection with RabbitMQ's semantics: exchanges route to queues,
/// publishes are confirmed, deliveries stay unacknowledged until acked, unacked deliveries
/// of a cancelled subscription (or a dead connection) are redelivered, per-message and
/// per-queue TTLs expire messages, rejected or expired messages are dead-lettered.
public protocol Transport: Sendable {
    func declare(_ exchange: ExchangeSpec) async throws
    /// Declares a queue; returns its name (the broker's choice when `spec.name` is empty).
    @discardableResult
    func declare(_ queue: QueueSpec) async throws -> String
    func bind(_ binding: BindingSpec) async throws
    /// Publishes and returns once the broker has confirmed it (publisher confirms).
    /// The exchange "" is the default exchange: routing key = queue name.
    func publish(_ message: Message, exchange: String, routingKey: String) async throws
    /// Publishes `batch` in order and returns once the broker confirmed every message. A
    /// transport may pipeline the confirms (AMQP sends the whole batch before waiting).
    func publish(_ batch: [Publication]) async throws
    /// Starts consuming `queue` with at most `prefetch` unacknowledged deliveries.
    func subscribe(queue: String, prefetch: Int) async throws -> Subscription
    /// Number of ready (not yet delivered) messages in `queue`.
    func messageCount(queue: String) async throws -> Int
    /// Closes the connection; unacked deliveries return to their queues.
    func close() async
}

extension Transport {
    /// One confirmed publish after another: right for a transport without a network round
    /// trip per confirm (the in-memory broker).
    public func publish(_ batch: [Publication]) async throws {
        for p in batch { try await publish(p.message, exchange: p.exchange, routingKey: p.routingKey) }
    }
}

/// A message and where to publish it.
public struct Publication: Sendable {
    public var message: Message
    public var exchange: String
    public var routingKey: String
    public init(_ message: Message, exchange: String, routingKey: String) {
        self.message = message
        self.exchange = exchange
        self.routingKey = routingKey
    }
}

/// A consumer on one queue. Deliveries arrive in `deliveries`; each must be acked or
/// rejected through this subscription.
public final class Subscription: Sendable {
    public let deliveries: AsyncThrowingStream<Delivery, any Error>
    private let onAck: @Sendable (DeliveryTag) async throws -> Void
    private let onReject: @Sendable (DeliveryTag, Bool) async throws -> Void
    private let onCancel: @Sendable () async -> Void

    public init(deliveries: AsyncThrowingStream<Delivery, any Error>,
                ack: @escaping @Sendable (DeliveryTag) async throws -> Void,
                reject: @escaping @Sendable (DeliveryTag, Bool) async throws -> Void,
                cancel: @escaping @Sendable () async -> Void) {
        self.deliveries = deliveries
        self.onAck = ack
        self.onReject = reject
        self.onCancel = cancel
    }

    /// Acknowledges: the broker forgets the message. A stale tag (from before a reconnect) is
    /// ignored: the broker already requeued that message.
    public func ack(_ delivery: Delivery) async throws { try await onAck(delivery.tag) }

    /// Rejects: back to the queue when `requeue`, otherwise dead-lettered (or dropped).
    public func reject(_ delivery: Delivery, requeue: Bool) async throws { try await onReject(delivery.tag, requeue) }

    /// Stops consuming; unacked deliveries return to the queue. `deliveries` finishes.
    public func cancel() async { await onCancel() }
}

/// A transport-level failure, with what to do about it.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidURL, connectionFailed, authenticationFailed, tlsFailed
        case precondition, notFound, publishRejected, closed, protocolError
    }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
