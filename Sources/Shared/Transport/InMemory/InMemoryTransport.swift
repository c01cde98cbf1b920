// The embedded default transport: a connection to an InMemoryBroker in this process, with the
// broker's semantics and no network. Several transports on one broker are several clients.

public final class InMemoryTransport: Transport {
    public let broker: InMemoryBroker
    private let connection: UInt64

    /// Opens a connection to `broker`. On a broker that has shut down, every operation throws
    /// `.closed`.
    public init(broker: InMemoryBroker) {
        self.broker = broker
        connection = broker.openConnection()
    }

    public func declare(_ exchange: ExchangeSpec) async throws {
        try broker.perform { state, _ in try state.declare(exchange, connection: connection) }
    }

    @discardableResult
    public func declare(_ queue: QueueSpec) async throws -> String {
        try broker.perform { state, op in try state.declare(queue, connection: connection, &op) }
    }

    public func bind(_ binding: BindingSpec) async throws {
        try broker.perform { state, _ in try state.bind(binding, connection: connection) }
    }

    /// Returns once the message is in every queue it routes to (or routes nowhere). Headers
    /// beyond `HeaderBounds` mark the message malformed, as the AMQP transport does.
    public func publish(_ message: Message, exchange: String, routingKey: String) async throws {
        let message = HeaderBounds.checked(message)
        try broker.perform { state, op in
            try state.publish(message, exchange: exchange, routingKey: routingKey, connection: connection, &op)
        }
    }

    public func subscribe(queue: String, prefetch: Int) async throws -> Subscription {
        let (deliveries, continuation) = AsyncThrowingStream.makeStream(of: Delivery.self)
        let consumer: UInt64
        do {
            consumer = try broker.perform { state, op in
                try state.subscribe(queue: queue, prefetch: prefetch, connection: connection,
                                    continuation: continuation, &op)
            }
        } catch {
            continuation.finish()
            throw error
        }
        let broker = self.broker
        // A reader that stops (its task cancelled, the stream dropped) can take no more
        // deliveries: cancel the consumer so what it holds goes back to the queue.
        continuation.onTermination = { [weak broker] termination in
            if case .cancelled = termination { broker?.cancel(consumer: consumer) }
        }
        return Subscription(
            deliveries: deliveries,
            ack: { tag in broker.perform { state, op in state.ack(consumer: consumer, tag: tag, &op) } },
            reject: { tag, requeue in
                broker.perform { state, op in state.reject(consumer: consumer, tag: tag, requeue: requeue, &op) }
            },
            cancel: { broker.cancel(consumer: consumer) })
    }

    public func messageCount(queue: String) async throws -> Int {
        try broker.perform { state, op in try state.messageCount(queue: queue, connection: connection, &op) }
    }

    /// Cancels this connection's subscriptions (unacked deliveries return to their queues) and
    /// deletes its exclusive queues. Later operations throw `.closed`; acks are ignored.
    public func close() async {
        broker.closeConnection(connection)
    }
}
