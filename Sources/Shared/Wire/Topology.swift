// The RabbitMQ names and arguments of docs/WIRE.md: part of the contract with third-party
// clients. Every role declares them (idempotently: identical arguments every time).

/// Exchange and queue names and their declarations.
public enum Topology {
    /// Job open records → the aggregator. Direct exchange.
    public static let jobsExchange = "sr.jobs"
    public static let jobsQueue = "sr.jobs"
    /// Mini-job tasks → consumers, by layer priority (classic queue; quorum queues have 2 levels).
    public static let tasksQueue = "sr.tasks"
    /// Partial products → the aggregator.
    public static let partialsQueue = "sr.partials"
    /// Deadline messages, dead-lettered here from the delay queues when their TTL expires.
    public static let deadlinesQueue = "sr.deadlines"
    /// Refinements, routing keys `job.<id>.resolution.<k>` and `job.<id>.final`. Topic exchange.
    public static let outputsExchange = "sr.outputs"
    /// Undecodable or invalid messages, with an `sr-dead-reason` header.
    public static let deadLetterExchange = "sr.dlx"
    public static let deadQueue = "sr.dead"

    /// Priorities 0…9 on sr.tasks: layer ℓ gets 9 − ℓ (layers beyond 9 share priority 0).
    public static let maxTaskPriority: UInt8 = 9

    public static func taskPriority(layer: Int) -> UInt8 {
        UInt8(max(0, Int(maxTaskPriority) - layer))
    }

    /// A delay queue per distinct relative deadline: only a queue's head expires, so one TTL per
    /// queue keeps every timer exact. Idle delay queues delete themselves after 10 minutes more.
    public static func delayQueue(milliseconds ms: Int64) -> QueueSpec {
        QueueSpec(name: "sr.delay.\(ms)ms", durable: true, messageTTL: .milliseconds(ms),
                  expires: .milliseconds(ms + 600_000),
                  deadLetterExchange: "", deadLetterRoutingKey: deadlinesQueue)
    }

    public static let exchanges: [ExchangeSpec] = [
        ExchangeSpec(name: jobsExchange, kind: .direct),
        ExchangeSpec(name: outputsExchange, kind: .topic),
        ExchangeSpec(name: deadLetterExchange, kind: .fanout),
    ]

    public static let queues: [QueueSpec] = [
        // No x-dead-letter-exchange on these: expired tasks would flood sr.dead. Roles
        // dead-letter explicitly, adding the reason (see DeadLetter).
        QueueSpec(name: jobsQueue, durable: true),
        QueueSpec(name: tasksQueue, durable: true, maxPriority: maxTaskPriority),
        QueueSpec(name: partialsQueue, durable: true),
        QueueSpec(name: deadlinesQueue, durable: true),
        QueueSpec(name: deadQueue, durable: true),
    ]

    public static let bindings: [BindingSpec] = [
        BindingSpec(queue: jobsQueue, exchange: jobsExchange, routingKey: "open"),
        BindingSpec(queue: deadQueue, exchange: deadLetterExchange, routingKey: ""),
    ]

    /// Declares everything above; safe to call from every role at every start.
    public static func declare(on transport: any Transport) async throws {
        for e in exchanges { try await transport.declare(e) }
        for q in queues { try await transport.declare(q) }
        for b in bindings { try await transport.bind(b) }
    }

    public static func resolutionKey(job: String, resolution: Int) -> String { "job.\(job).resolution.\(resolution)" }
    public static func finalKey(job: String) -> String { "job.\(job).final" }
}
