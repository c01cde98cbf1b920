// What a conformance case works with: connections from the factory, subscriptions read with
// bounded waits, unique names; everything it opened is cancelled and closed when it ends.
import SRTransport
import Synchronization

final class Harness: Sendable {
    let factory: TransportFactory
    let slug: String
    private let pumps: AsyncStream<Inbox>.Continuation
    private let opened = Mutex<(transports: [any Transport], inboxes: [Inbox])>(([], []))

    private init(factory: TransportFactory, slug: String, pumps: AsyncStream<Inbox>.Continuation) {
        self.factory = factory
        self.slug = slug
        self.pumps = pumps
    }

    /// Runs `body` with a harness, then tears down what it opened even when `body` fails.
    /// The subscriptions' pump tasks live in a task group here, so none outlives the case.
    static func run(factory: TransportFactory, slug: String, _ body: @Sendable (Harness) async throws -> Void) async throws {
        let (inboxes, pumps) = AsyncStream.makeStream(of: Inbox.self)
        let harness = Harness(factory: factory, slug: slug, pumps: pumps)
        let outcome = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withDiscardingTaskGroup { pumping in
                    for await inbox in inboxes { pumping.addTask { await inbox.pump() } }
                }
            }
            let outcome: Result<Void, any Error>
            do {
                try await body(harness)
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
            await harness.tearDown()
            pumps.finish()
            group.cancelAll()  // a stream that did not end on cancel must not hang the case
            return outcome
        }
        try outcome.get()
    }

    private func tearDown() async {
        let (transports, inboxes) = opened.withLock { ($0.transports, $0.inboxes) }
        for inbox in inboxes { await inbox.cancel() }
        for transport in transports { await transport.close() }
    }

    /// A name unique to this run: prefix, case, role and a random part.
    func name(_ role: String) -> String {
        "\(factory.prefix).\(slug).\(role).\(String(UInt64.random(in: .min ... .max), radix: 36))"
    }

    /// A new connection, closed when the case ends.
    func connect() async throws -> any Transport {
        let transport = try await factory.make()
        opened.withLock { $0.transports.append(transport) }
        return transport
    }

    /// Subscribes and starts reading; the subscription is cancelled when the case ends.
    func subscribe(_ transport: any Transport, _ queue: String, prefetch: Int) async throws -> Inbox {
        let inbox = Inbox(subscription: try await transport.subscribe(queue: queue, prefetch: prefetch), queue: queue)
        opened.withLock { $0.inboxes.append(inbox) }
        pumps.yield(inbox)
        return inbox
    }

    /// Declares a queue for this case: non-durable and deleted by the broker 60 s after its last
    /// use, so a real broker is not left with debris. Returns its name.
    func scratchQueue(_ transport: any Transport, _ role: String, maxPriority: UInt8? = nil,
                      messageTTL: Duration? = nil, deadLetterExchange: String? = nil,
                      deadLetterRoutingKey: String? = nil) async throws -> String {
        try await transport.declare(QueueSpec(
            name: name(role), durable: false, maxPriority: maxPriority, messageTTL: messageTTL,
            expires: .seconds(600), deadLetterExchange: deadLetterExchange, deadLetterRoutingKey: deadLetterRoutingKey))
    }

    /// Declares a non-durable exchange for this case. Returns its name.
    func scratchExchange(_ transport: any Transport, _ role: String, _ kind: ExchangeSpec.Kind) async throws -> String {
        let name = name(role)
        try await transport.declare(ExchangeSpec(name: name, kind: kind, durable: false))
        return name
    }
}

// MARK: Checks used by several cases

/// Runs `operation`, which must fail with a TransportError of `code`.
func expectError<T>(_ code: TransportError.Code, _ what: String, file: StaticString = #fileID, line: UInt = #line,
                    _ operation: () async throws -> T) async throws {
    do {
        _ = try await operation()
    } catch let error as TransportError {
        try check(error.code == code, "\(what): expected TransportError(.\(code)), got .\(error.code): \(error)", file: file, line: line)
        return
    } catch {
        throw ConformanceFailure("\(what): expected TransportError(.\(code)), got \(type(of: error)): \(error)", file: file, line: line)
    }
    throw ConformanceFailure("\(what): expected TransportError(.\(code)), but it succeeded", file: file, line: line)
}

/// Polls `condition` until it holds, for effects a transport gives no event for (a broker
/// deleting a queue after the fact). Bounded by `timeout`.
func eventually(within timeout: Duration = .seconds(30), _ what: @autoclosure () -> String,
                file: StaticString = #fileID, line: UInt = #line, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            throw ConformanceFailure("Not within \(timeout): \(what())", file: file, line: line)
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// Whether `queue` is gone: messageCount fails with .notFound. Other transport errors mean
/// "not yet": RabbitMQ answers 405 RESOURCE_LOCKED for an exclusive queue whose connection
/// is closing but whose queue is not deleted yet.
func isDeleted(_ queue: String, on transport: any Transport) async throws -> Bool {
    do {
        _ = try await transport.messageCount(queue: queue)
        return false
    } catch let error as TransportError {
        return error.code == .notFound
    }
}

/// The `x-death` records of a dead-lettered message, newest first.
func deaths(_ message: Message) -> [[String: HeaderValue]] {
    guard case .array(let entries)? = message.headers["x-death"] else { return [] }
    return entries.compactMap { if case .table(let t) = $0 { t } else { nil } }
}

/// Checks the newest `x-death` record of a dead-lettered message.
func checkDeath(_ delivery: Delivery, reason: String, queue: String, exchange: String, routingKey: String,
                file: StaticString = #fileID, line: UInt = #line) throws {
    let records = deaths(delivery.message)
    guard let death = records.first else {
        throw ConformanceFailure("No x-death header on the dead-lettered message; headers: \(delivery.message.headers)", file: file, line: line)
    }
    try check(death["reason"]?.stringValue == reason, "x-death reason \(String(describing: death["reason"])), expected \(reason)", file: file, line: line)
    try check(death["queue"]?.stringValue == queue, "x-death queue \(String(describing: death["queue"])), expected \(queue)", file: file, line: line)
    try check(death["count"]?.intValue == 1, "x-death count \(String(describing: death["count"])), expected 1", file: file, line: line)
    try check(death["exchange"]?.stringValue == exchange, "x-death exchange \(String(describing: death["exchange"])), expected '\(exchange)'", file: file, line: line)
    try check(death["routing-keys"] == .array([.string(routingKey)]),
              "x-death routing-keys \(String(describing: death["routing-keys"])), expected [\(routingKey)]", file: file, line: line)
}
