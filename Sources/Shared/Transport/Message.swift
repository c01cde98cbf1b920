// What travels through a transport: a body of bytes plus AMQP-style properties and headers.

/// A header value. AMQP field tables carry more types; these are the ones this system writes
/// (and `array`/`table` for the broker's own `x-death` records when reading).
public enum HeaderValue: Sendable, Hashable {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)
    case bytes([UInt8])
    case array([HeaderValue])
    case table([String: HeaderValue])

    public var stringValue: String? { if case .string(let s) = self { s } else { nil } }
    public var intValue: Int64? {
        switch self {
        case .int(let v): v
        case .string(let s): Int64(s)
        default: nil
        }
    }
    public var doubleValue: Double? {
        switch self {
        case .double(let v): v
        case .int(let v): Double(v)
        default: nil
        }
    }
}

/// A message with the AMQP basic properties this system uses.
public struct Message: Sendable, Hashable {
    public var body: [UInt8]
    public var headers: [String: HeaderValue]
    /// 0…255; a queue with `x-max-priority` N treats anything above N as N.
    public var priority: UInt8?
    /// Per-message time to live; the broker drops (or dead-letters) it when it expires in a queue.
    public var expiration: Duration?
    public var messageID: String?
    public var contentType: String?
    /// Delivery mode 2 (written to disk by a durable queue) when true.
    public var persistent: Bool

    public init(body: [UInt8] = [], headers: [String: HeaderValue] = [:], priority: UInt8? = nil,
                expiration: Duration? = nil, messageID: String? = nil, contentType: String? = nil,
                persistent: Bool = true) {
        self.body = body
        self.headers = headers
        self.priority = priority
        self.expiration = expiration
        self.messageID = messageID
        self.contentType = contentType
        self.persistent = persistent
    }
}

/// Identifies one delivery to one subscription, for ack/reject.
public struct DeliveryTag: Sendable, Hashable {
    /// Distinguishes subscriptions and reconnections (a tag from an earlier connection is stale).
    public let generation: UInt64
    public let value: UInt64
    public init(generation: UInt64, value: UInt64) {
        self.generation = generation
        self.value = value
    }
}

/// A message handed to a subscriber; it stays unacknowledged until acked or rejected.
public struct Delivery: Sendable {
    public let message: Message
    public let exchange: String
    public let routingKey: String
    /// True when the broker delivered this message before (to a subscriber that did not ack it).
    public let redelivered: Bool
    public let tag: DeliveryTag

    public init(message: Message, exchange: String, routingKey: String, redelivered: Bool, tag: DeliveryTag) {
        self.message = message
        self.exchange = exchange
        self.routingKey = routingKey
        self.redelivered = redelivered
        self.tag = tag
    }
}
