// The RabbitMQ names and arguments of docs/WIRE.md: part of the contract with third-party
// clients. Every role declares them (idempotently: identical arguments every time).
import SRTransport

/// Exchange and queue names and their declarations.
///
/// Every message kind enters through an exchange of its own (never the default exchange), so
/// broker permissions can say who may send what (scripts/rabbitmq-users.sh, docs/TRUST.md):
/// producers write open records, tasks and deadline timers; consumers write partials;
/// the aggregator writes outputs (and inference tasks); the broker alone moves a timer's
/// deadline message into sr.deadlines (dead-lettering needs no user permission).
public enum Topology {
    /// Job open records → the aggregator. Direct exchange, key "open".
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
    /// Fanout of done notices (DoneMessage): each consumer binds a queue of its own.
    public static let doneExchange = "sr.done"
    /// A copy of every job's final output (`job.*.final`), kept 10 minutes: the ledger that
    /// tells a restarted aggregator which redelivered jobs were already answered.
    public static let finalsQueue = "sr.finals"
    /// Direct exchanges per message kind (names differ from the queues', so a permission on one
    /// is never a permission on the other).
    public static let taskExchange = "sr.task"
    public static let partialExchange = "sr.partial"
    public static let deadlineExchange = "sr.deadline"
    /// Deadline timers: each delay queue is bound here with its own name as the key.
    public static let delayExchange = "sr.delay"

    /// Where a message kind is published: exchange and routing key.
    public struct Route: Sendable, Equatable {
        public let exchange: String
        public let routingKey: String
        public init(exchange: String, routingKey: String) {
            self.exchange = exchange
            self.routingKey = routingKey
        }
    }

    public static let openRoute = Route(exchange: jobsExchange, routingKey: "open")
    public static let taskRoute = Route(exchange: taskExchange, routingKey: "task")
    public static let partialRoute = Route(exchange: partialExchange, routingKey: "partial")
    /// A deadline fired now (`srproduce deadline`); timers reach sr.deadlines the same way.
    public static let doneRoute = Route(exchange: doneExchange, routingKey: "")
    public static let deadlineRoute = Route(exchange: deadlineExchange, routingKey: "deadline")
    public static func delayRoute(_ queue: QueueSpec) -> Route { Route(exchange: delayExchange, routingKey: queue.name) }

    /// Priorities 0…9 on sr.tasks: layer ℓ gets 9 − ℓ (layers beyond 9 share priority 0).
    public static let maxTaskPriority: UInt8 = 9

    public static func taskPriority(layer: Int) -> UInt8 {
        UInt8(max(0, Int(maxTaskPriority) - layer))
    }

    /// A delay queue per distinct relative deadline: only a queue's head expires, so one TTL per
    /// queue keeps every timer exact. Idle delay queues delete themselves after 10 minutes more.
    /// Declare it with `declareDelayQueue` (it must also be bound to `delayExchange`).
    public static func delayQueue(milliseconds ms: Int64) -> QueueSpec {
        QueueSpec(name: "sr.delay.\(ms)ms", durable: true, messageTTL: .milliseconds(ms),
                  expires: .milliseconds(ms + 600_000),
                  deadLetterExchange: deadlineExchange, deadLetterRoutingKey: deadlineRoute.routingKey)
    }

    /// Declares a delay queue and binds it to `delayExchange` under its name.
    public static func declareDelayQueue(_ queue: QueueSpec, on transport: any Transport) async throws {
        try await transport.declare(queue)
        try await transport.bind(BindingSpec(queue: queue.name, exchange: delayExchange, routingKey: queue.name))
    }

    public static let exchanges: [ExchangeSpec] = [
        ExchangeSpec(name: jobsExchange, kind: .direct),
        ExchangeSpec(name: taskExchange, kind: .direct),
        ExchangeSpec(name: partialExchange, kind: .direct),
        ExchangeSpec(name: deadlineExchange, kind: .direct),
        ExchangeSpec(name: delayExchange, kind: .direct),
        ExchangeSpec(name: outputsExchange, kind: .topic),
        ExchangeSpec(name: deadLetterExchange, kind: .fanout),
        ExchangeSpec(name: doneExchange, kind: .fanout),
    ]

    public static let queues: [QueueSpec] = [
        // No x-dead-letter-exchange on these: expired tasks would flood sr.dead. Roles
        // dead-letter explicitly, adding the reason (see DeadLetter).
        QueueSpec(name: jobsQueue, durable: true),
        QueueSpec(name: tasksQueue, durable: true, maxPriority: maxTaskPriority),
        QueueSpec(name: partialsQueue, durable: true),
        QueueSpec(name: deadlinesQueue, durable: true),
        QueueSpec(name: deadQueue, durable: true),
        QueueSpec(name: finalsQueue, durable: true, messageTTL: .seconds(600)),
    ]

    public static let bindings: [BindingSpec] = [
        BindingSpec(queue: jobsQueue, exchange: jobsExchange, routingKey: openRoute.routingKey),
        BindingSpec(queue: tasksQueue, exchange: taskExchange, routingKey: taskRoute.routingKey),
        BindingSpec(queue: partialsQueue, exchange: partialExchange, routingKey: partialRoute.routingKey),
        BindingSpec(queue: deadlinesQueue, exchange: deadlineExchange, routingKey: deadlineRoute.routingKey),
        BindingSpec(queue: deadQueue, exchange: deadLetterExchange, routingKey: ""),
        BindingSpec(queue: finalsQueue, exchange: outputsExchange, routingKey: "job.*.final"),
    ]

    /// Declares everything above; safe to call from every role at every start. A role whose
    /// broker user may not configure the topology (per-role users, scripts/rabbitmq-users.sh)
    /// only checks that the queues exist: the aggregator's user declares them.
    public static func declare(on transport: any Transport) async throws {
        do {
            for e in exchanges { try await transport.declare(e) }
        } catch let error as TransportError where error.code == .authenticationFailed {
            for q in queues {
                do {
                    _ = try await transport.messageCount(queue: q.name)
                } catch let missing as TransportError where missing.code == .notFound {
                    throw TransportError(.notFound, "queue \(q.name) does not exist and this user may not declare it (\(error.message)); start sraggregate first — its user declares the topology")
                }
            }
            return
        }
        for q in queues { try await transport.declare(q) }
        for b in bindings { try await transport.bind(b) }
    }

    public static func resolutionKey(job: String, resolution: Int) -> String { "job.\(job).resolution.\(resolution)" }
    public static func finalKey(job: String) -> String { "job.\(job).final" }
    /// Progress notices (ProgressMessage) of jobs that ask for them.
    public static func progressKey(job: String) -> String { "job.\(job).progress" }
    /// `open.<id>`: the aggregator's notice that it opened a job (OpenedNotice); outside `job.#`,
    /// so readers of outputs never see it.
    public static func openedKey(job: String) -> String { "open.\(job)" }
}

extension Publication {
    /// A message on one of the topology's routes.
    public init(_ message: Message, _ route: Topology.Route) {
        self.init(message, exchange: route.exchange, routingKey: route.routingKey)
    }
}

extension Transport {
    /// Publishes on one of the topology's routes.
    public func publish(_ message: Message, _ route: Topology.Route) async throws {
        try await publish(message, exchange: route.exchange, routingKey: route.routingKey)
    }
}
