// The Transport over RabbitMQ: two AMQP connections (one publishes with confirms, one declares
// and consumes), each on its own thread, both reconnecting on their own.
import SRTransport
import Foundation
import Logging

/// `Transport` over a real RabbitMQ (AMQP 0-9-1 through rabbitmq-c).
///
/// Two connections, as RabbitMQ recommends: when the broker throttles a publishing connection
/// (flow control, memory or disk alarm) it stops reading from it, and acks sharing that
/// connection would stall with it. Declarations, subscriptions and `messageCount` share the
/// consuming connection, so exclusive queues declared here can also be consumed here.
///
/// Reliability: publishes return once confirmed; after a lost connection each side reconnects
/// with jittered exponential backoff, re-declares the topology declared so far, re-subscribes
/// (deliveries get a new `DeliveryTag.generation`; acks of older tags are ignored because the
/// broker requeued those messages) and re-publishes unconfirmed messages (at-least-once).
/// Subscriptions to exclusive queues end with `.closed` instead: their queue died with the
/// old connection.
public final class AMQPTransport: Transport {
    /// Timeouts and backoff; every field has a default.
    public struct Configuration: Sendable {
        /// How long an operation may take, including time spent reconnecting: a declare, a
        /// subscribe, or a publish until its confirm. Default 30 s.
        public var operationTimeout: Duration
        /// First delay before reconnecting; doubled after each failed attempt up to
        /// `maximumReconnectDelay`, each delay shortened at random by up to half (jitter).
        /// Defaults 100 ms and 5 s.
        public var minimumReconnectDelay: Duration
        public var maximumReconnectDelay: Duration
        /// How long `close()` waits for outstanding publisher confirms. Default 5 s.
        public var closeTimeout: Duration

        public init(operationTimeout: Duration = .seconds(30), minimumReconnectDelay: Duration = .milliseconds(100),
                    maximumReconnectDelay: Duration = .seconds(5), closeTimeout: Duration = .seconds(5)) {
            self.operationTimeout = operationTimeout
            self.minimumReconnectDelay = minimumReconnectDelay
            self.maximumReconnectDelay = maximumReconnectDelay
            self.closeTimeout = closeTimeout
        }
    }

    public let url: AMQPURL
    private let publisher: AMQPConnection
    private let consumer: AMQPConnection

    /// Parses `url` (TLS files may come from `environment`, see `AMQPURL`) and connects.
    /// Fails fast with a clear error when the broker cannot be reached or refuses the login.
    public static func connect(_ url: String,
                               environment: [String: String] = ProcessInfo.processInfo.environment,
                               configuration: Configuration = Configuration(),
                               logger: Logger) async throws -> AMQPTransport {
        try await connect(AMQPURL(url, environment: environment), configuration: configuration, logger: logger)
    }

    /// Connects both connections (concurrently); fails fast like `connect(_:environment:configuration:logger:)`.
    public static func connect(_ url: AMQPURL, configuration: Configuration = Configuration(),
                               logger: Logger) async throws -> AMQPTransport {
        let topology = TopologyRecord()
        async let consumer = AMQPConnection.open(url: url, role: "consumer", configuration: configuration,
                                                 topology: topology, logger: logger)
        async let publisher = AMQPConnection.open(url: url, role: "publisher", configuration: configuration,
                                                  topology: topology, logger: logger)
        let c: AMQPConnection
        do {
            c = try await consumer
        } catch {
            if let p = try? await publisher { await p.close() }
            throw error
        }
        let p: AMQPConnection
        do {
            p = try await publisher
        } catch {
            await c.close()
            throw error
        }
        return AMQPTransport(url: url, publisher: p, consumer: c)
    }

    private init(url: AMQPURL, publisher: AMQPConnection, consumer: AMQPConnection) {
        self.url = url
        self.publisher = publisher
        self.consumer = consumer
    }

    /// How many times the connections were re-established after losing the broker.
    public var reconnections: Int { publisher.reconnections + consumer.reconnections }

    public func declare(_ exchange: ExchangeSpec) async throws {
        try await consumer.declare(exchange)
    }

    @discardableResult
    public func declare(_ queue: QueueSpec) async throws -> String {
        try await consumer.declare(queue)
    }

    public func bind(_ binding: BindingSpec) async throws {
        try await consumer.bind(binding)
    }

    public func publish(_ message: Message, exchange: String, routingKey: String) async throws {
        try await publisher.publish(message, exchange: exchange, routingKey: routingKey)
    }

    public func publish(_ batch: [Publication]) async throws {
        try await publisher.publish(batch)
    }

    public func subscribe(queue: String, prefetch: Int) async throws -> Subscription {
        try await consumer.subscribe(queue: queue, prefetch: prefetch)
    }

    public func messageCount(queue: String) async throws -> Int {
        try await consumer.messageCount(queue: queue)
    }

    /// Waits for outstanding confirms (up to `closeTimeout`), then closes both connections;
    /// unacked deliveries return to their queues and every subscription's stream finishes.
    public func close() async {
        async let p: Void = publisher.close()
        async let c: Void = consumer.close()
        _ = await (p, c)
    }
}
