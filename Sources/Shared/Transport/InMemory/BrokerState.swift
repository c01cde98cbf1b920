// What an in-memory broker knows, with its connection and topology operations (messages:
// MessageFlow.swift; timers: QueueTimers.swift). InMemoryBroker runs each operation under one
// lock, so each sees and leaves a consistent broker, like one RabbitMQ node.

/// The context of one operation: its time, and the work it leaves for the end of the operation
/// (dispatching the queues it touched) or for after the lock (finishing streams, whose
/// termination handlers may call back into the broker).
struct BrokerOperation {
    let now: Duration
    let broker: InMemoryBroker
    var finished: [DeliveryContinuation] = []
    var dirty: [QueueState] = []

    /// Queues `q` for dispatch and timer re-arming at the end of the operation.
    mutating func touch(_ q: QueueState) {
        guard !q.isDirty else { return }
        q.isDirty = true
        dirty.append(q)
    }
}

final class BrokerState {
    var exchanges: [String: ExchangeState] = [:]
    var queues: [String: QueueState] = [:]
    var consumers: [UInt64: ConsumerState] = [:]
    var connections: [UInt64: ConnectionState] = [:]
    private var lastID: UInt64 = 0
    private(set) var isShutDown = false

    init() {
        // The exchanges every RabbitMQ has.
        for (name, kind) in [("amq.direct", ExchangeSpec.Kind.direct), ("amq.topic", .topic), ("amq.fanout", .fanout)] {
            exchanges[name] = ExchangeState(spec: ExchangeSpec(name: name, kind: kind, durable: true))
        }
    }

    func makeID() -> UInt64 {
        lastID += 1
        return lastID
    }

    // MARK: Connections

    func openConnection() -> UInt64 {
        let id = makeID()
        if !isShutDown { connections[id] = ConnectionState() }
        return id
    }

    /// Cancels the connection's consumers (their unacked deliveries go back to their queues) and
    /// deletes its exclusive queues. Closing twice does nothing.
    func closeConnection(_ id: UInt64, _ op: inout BrokerOperation) {
        guard let connection = connections[id] else { return }
        for consumer in connection.consumers.sorted() { cancel(consumer: consumer, &op) }
        for name in connection.exclusiveQueues.sorted() {
            if let q = queues[name] { deleteQueue(q, &op) }
        }
        connections[id] = nil
    }

    func shutdown(_ op: inout BrokerOperation) {
        isShutDown = true
        for q in queues.values { q.cancelTimers() }
        for consumer in consumers.values { op.finished.append(consumer.continuation) }
        queues = [:]
        consumers = [:]
        connections = [:]
        exchanges = [:]
        op.dirty = []
    }

    func checkOpen(_ connection: UInt64) throws(TransportError) {
        if isShutDown { throw TransportError(.closed, "The in-memory broker has shut down.") }
        if connections[connection] == nil {
            throw TransportError(.closed, "This in-memory transport is closed; open a new InMemoryTransport on the broker.")
        }
    }

    // MARK: Topology

    func declare(_ spec: ExchangeSpec, connection: UInt64) throws(TransportError) {
        try checkOpen(connection)
        if spec.name.isEmpty {
            throw TransportError(.precondition, "The default exchange \"\" cannot be declared (RabbitMQ: 403 ACCESS_REFUSED).")
        }
        if let existing = exchanges[spec.name] {
            guard existing.spec.kind == spec.kind, existing.spec.durable == spec.durable else {
                throw TransportError(.precondition, """
                    Exchange '\(spec.name)' exists as \(existing.spec.kind.rawValue), durable \(existing.spec.durable); \
                    it was declared as \(spec.kind.rawValue), durable \(spec.durable) (RabbitMQ: 406 PRECONDITION_FAILED). \
                    Declare it with the same arguments, or delete it first.
                    """)
            }
            return
        }
        if spec.name.hasPrefix("amq.") {
            throw TransportError(.precondition, "Exchange names starting with 'amq.' are reserved (RabbitMQ: 403 ACCESS_REFUSED).")
        }
        exchanges[spec.name] = ExchangeState(spec: spec)
    }

    /// Returns the queue's name: the broker's choice ("amq.gen-…") when `spec.name` is empty.
    func declare(_ spec: QueueSpec, connection: UInt64, _ op: inout BrokerOperation) throws(TransportError) -> String {
        try checkOpen(connection)
        if let ttl = spec.messageTTL, ttl < .zero {
            throw TransportError(.precondition, "x-message-ttl must not be negative (RabbitMQ: 406 PRECONDITION_FAILED).")
        }
        if let expires = spec.expires, expires <= .zero {
            throw TransportError(.precondition, "x-expires must be positive (RabbitMQ: 406 PRECONDITION_FAILED).")
        }
        if let q = queues[spec.name] {
            try checkAccess(q, connection)
            if let difference = Self.difference(existing: q.spec, declared: spec) {
                throw TransportError(.precondition, """
                    Queue '\(spec.name)' exists with \(difference) (RabbitMQ: 406 PRECONDITION_FAILED). \
                    Declare it with the same arguments, or delete it first.
                    """)
            }
            armIdleTimer(q, &op)  // a redeclaration is a use (x-expires)
            return spec.name
        }
        if spec.name.hasPrefix("amq.") {
            throw TransportError(.precondition, "Queue names starting with 'amq.' are reserved (RabbitMQ: 403 ACCESS_REFUSED).")
        }
        let name = spec.name.isEmpty ? generatedQueueName() : spec.name
        let named = QueueSpec(
            name: name, durable: spec.durable, exclusive: spec.exclusive, autoDelete: spec.autoDelete,
            maxPriority: spec.maxPriority, messageTTL: spec.messageTTL, expires: spec.expires,
            deadLetterExchange: spec.deadLetterExchange, deadLetterRoutingKey: spec.deadLetterRoutingKey)
        let q = QueueState(id: makeID(), spec: named, owner: spec.exclusive ? connection : nil)
        queues[name] = q
        if spec.exclusive { connections[connection]?.exclusiveQueues.insert(name) }
        armIdleTimer(q, &op)
        return name
    }

    /// Which argument differs, in words; nil when the declarations are equivalent.
    private static func difference(existing e: QueueSpec, declared d: QueueSpec) -> String? {
        func describe<T>(_ v: T?) -> String { v.map { "\($0)" } ?? "none" }
        var differences: [String] = []
        if e.durable != d.durable { differences.append("durable \(e.durable), not \(d.durable)") }
        if e.exclusive != d.exclusive { differences.append("exclusive \(e.exclusive), not \(d.exclusive)") }
        if e.autoDelete != d.autoDelete { differences.append("auto-delete \(e.autoDelete), not \(d.autoDelete)") }
        if e.maxPriority != d.maxPriority { differences.append("x-max-priority \(describe(e.maxPriority)), not \(describe(d.maxPriority))") }
        if e.messageTTL != d.messageTTL { differences.append("x-message-ttl \(describe(e.messageTTL)), not \(describe(d.messageTTL))") }
        if e.expires != d.expires { differences.append("x-expires \(describe(e.expires)), not \(describe(d.expires))") }
        if e.deadLetterExchange != d.deadLetterExchange {
            differences.append("x-dead-letter-exchange \(describe(e.deadLetterExchange)), not \(describe(d.deadLetterExchange))")
        }
        if e.deadLetterRoutingKey != d.deadLetterRoutingKey {
            differences.append("x-dead-letter-routing-key \(describe(e.deadLetterRoutingKey)), not \(describe(d.deadLetterRoutingKey))")
        }
        return differences.isEmpty ? nil : differences.joined(separator: ", ")
    }

    private func generatedQueueName() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        while true {
            let name = "amq.gen-" + String((0..<22).map { _ in alphabet.randomElement()! })
            if queues[name] == nil { return name }
        }
    }

    /// An exclusive queue belongs to the connection that declared it.
    func checkAccess(_ q: QueueState, _ connection: UInt64) throws(TransportError) {
        if let owner = q.owner, owner != connection {
            throw TransportError(.precondition, """
                Queue '\(q.spec.name)' is exclusive to another connection (RabbitMQ: 405 RESOURCE_LOCKED).
                """)
        }
    }

    func bind(_ binding: BindingSpec, connection: UInt64) throws(TransportError) {
        try checkOpen(connection)
        if binding.exchange.isEmpty {
            throw TransportError(.precondition, "Queues cannot be bound to the default exchange \"\" (RabbitMQ: 403 ACCESS_REFUSED).")
        }
        guard let exchange = exchanges[binding.exchange] else { throw Self.noExchange(binding.exchange) }
        guard let q = queues[binding.queue] else { throw Self.noQueue(binding.queue) }
        try checkAccess(q, connection)
        if exchange.bindings.contains(where: { $0.queue == binding.queue && $0.key == binding.routingKey }) { return }
        exchange.bindings.append(ExchangeState.Binding(
            queue: binding.queue, key: binding.routingKey,
            pattern: exchange.spec.kind == .topic ? TopicPattern(binding.routingKey) : nil))
    }

    static func noExchange(_ name: String) -> TransportError {
        TransportError(.notFound, "No exchange '\(name)' (RabbitMQ: 404 NOT_FOUND); declare it first.")
    }

    static func noQueue(_ name: String) -> TransportError {
        TransportError(.notFound, "No queue '\(name)' (RabbitMQ: 404 NOT_FOUND); declare it first.")
    }

    /// The queues a message published to `exchange` with `key` goes to, each once.
    func route(exchange name: String, key: String) throws(TransportError) -> [QueueState] {
        if name.isEmpty { return queues[key].map { [$0] } ?? [] }
        guard let exchange = exchanges[name] else { throw Self.noExchange(name) }
        let matching: [ExchangeState.Binding]
        switch exchange.spec.kind {
        case .fanout: matching = exchange.bindings
        case .direct: matching = exchange.bindings.filter { $0.key == key }
        case .topic:
            let words = TopicPattern.words(of: key)
            matching = exchange.bindings.filter { $0.pattern!.matches(words) }
        }
        var seen: Set<String> = []
        return matching.compactMap { seen.insert($0.queue).inserted ? queues[$0.queue] : nil }
    }

    func deleteQueue(_ q: QueueState, _ op: inout BrokerOperation) {
        guard queues[q.spec.name] === q else { return }
        queues[q.spec.name] = nil
        q.cancelTimers()
        for exchange in exchanges.values { exchange.bindings.removeAll { $0.queue == q.spec.name } }
        if let owner = q.owner { connections[owner]?.exclusiveQueues.remove(q.spec.name) }
        // Its consumers end (RabbitMQ sends basic.cancel); what they hold is lost with the queue.
        for consumer in q.consumers {
            consumers[consumer.id] = nil
            connections[consumer.connection]?.consumers.remove(consumer.id)
            op.finished.append(consumer.continuation)
        }
        q.consumers = []
        q.ready.removeAll()
    }
}
