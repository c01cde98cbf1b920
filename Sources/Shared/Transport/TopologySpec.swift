// Exchanges, queues and bindings as values, so both transports declare the same topology.

public struct ExchangeSpec: Sendable, Hashable {
    public enum Kind: String, Sendable { case direct, topic, fanout }
    public let name: String
    public let kind: Kind
    public let durable: Bool
    public init(name: String, kind: Kind, durable: Bool = true) {
        self.name = name
        self.kind = kind
        self.durable = durable
    }
}

/// A queue and the RabbitMQ arguments this system uses. Declaring an existing queue with
/// different arguments is an error (RabbitMQ: 406 PRECONDITION_FAILED), in both transports.
public struct QueueSpec: Sendable, Hashable {
    /// Empty: the broker picks a unique name (exclusive reply queues).
    public let name: String
    public let durable: Bool
    public let exclusive: Bool
    public let autoDelete: Bool
    /// `x-max-priority`: priorities 0…maxPriority are honoured (higher first).
    public let maxPriority: UInt8?
    /// `x-message-ttl`: every message expires after this long in the queue.
    public let messageTTL: Duration?
    /// `x-expires`: the queue is deleted after this long without consumers or redeclaration.
    public let expires: Duration?
    /// `x-dead-letter-exchange` (may be "" = the default exchange).
    public let deadLetterExchange: String?
    /// `x-dead-letter-routing-key`; the message's own key when nil.
    public let deadLetterRoutingKey: String?

    public init(name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
                maxPriority: UInt8? = nil, messageTTL: Duration? = nil, expires: Duration? = nil,
                deadLetterExchange: String? = nil, deadLetterRoutingKey: String? = nil) {
        self.name = name
        self.durable = durable
        self.exclusive = exclusive
        self.autoDelete = autoDelete
        self.maxPriority = maxPriority
        self.messageTTL = messageTTL
        self.expires = expires
        self.deadLetterExchange = deadLetterExchange
        self.deadLetterRoutingKey = deadLetterRoutingKey
    }
}

public struct BindingSpec: Sendable, Hashable {
    public let queue: String
    public let exchange: String
    /// For topic exchanges: words separated by dots, `*` one word, `#` zero or more.
    public let routingKey: String
    public init(queue: String, exchange: String, routingKey: String) {
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
    }
}
