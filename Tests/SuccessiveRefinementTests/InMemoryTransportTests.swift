// The in-memory transport: the shared transport conformance cases on a fresh broker each, plus
// what only the embedded broker can show cheaply (x-expires, cycles, load, shutdown).
import Synchronization
import Testing
import TransportConformance
@testable import SRTransport

@Suite struct InMemoryTransportTests {
    @Test(arguments: TransportConformance.cases)
    func conformance(_ conformanceCase: ConformanceCase) async throws {
        let broker = InMemoryBroker()
        defer { broker.shutdown() }
        try await conformanceCase.run(TransportFactory(prefix: "mem") { InMemoryTransport(broker: broker) })
    }

    @Test func idleQueueExpires() async throws {
        let clock = ManualClock()
        let broker = InMemoryBroker(clock: clock)
        defer { broker.shutdown() }
        let t = InMemoryTransport(broker: broker)
        let spec = QueueSpec(name: "sr.delay.50ms", durable: false, expires: .milliseconds(50))
        try await t.declare(spec)
        try await t.publish(Message(body: [1]), exchange: "", routingKey: spec.name)
        clock.advance(to: .milliseconds(49))
        #expect(broker.queueExists(spec.name))
        clock.advance(to: .milliseconds(51))
        try await waitUntil("the idle queue is deleted", within: .seconds(60)) { !broker.queueExists(spec.name) }
        // Its messages went with it, as in RabbitMQ.
        try await t.declare(spec)
        #expect(try await t.messageCount(queue: spec.name) == 0)
    }

    @Test func queueWithConsumerDoesNotExpire() async throws {
        let clock = ManualClock()
        let broker = InMemoryBroker(clock: clock)
        defer { broker.shutdown() }
        let t = InMemoryTransport(broker: broker)
        let spec = QueueSpec(name: "watched", durable: false, expires: .milliseconds(50))
        try await t.declare(spec)
        let subscription = try await t.subscribe(queue: spec.name, prefetch: 1)
        clock.advance(to: .milliseconds(200))
        #expect(broker.queueExists(spec.name))
        await subscription.cancel()
        // Unused from now on: deleted 50 ms later.
        clock.advance(to: .milliseconds(249))
        #expect(broker.queueExists(spec.name))
        clock.advance(to: .milliseconds(251))
        try await waitUntil("the queue is deleted once unused") { !broker.queueExists(spec.name) }
    }

    /// A queue whose expired messages dead-letter back into itself would loop forever; RabbitMQ
    /// drops a message that dies twice in one queue without a rejection in between.
    @Test func expiryCycleIsDropped() async throws {
        let broker = InMemoryBroker()
        defer { broker.shutdown() }
        let t = InMemoryTransport(broker: broker)
        let q = try await t.declare(QueueSpec(name: "loop", durable: false, messageTTL: .milliseconds(10), deadLetterExchange: ""))
        try await t.publish(Message(body: [1]), exchange: "", routingKey: q)
        try await waitUntil("the cycling message is dropped") { try await t.messageCount(queue: q) == 0 }
    }

    /// Rejection is not automatic, so reject → dead-letter back into the same queue is allowed,
    /// and the x-death count of the same (queue, reason) grows instead of adding records.
    @Test func rejectionCycleCountsDeaths() async throws {
        let broker = InMemoryBroker()
        defer { broker.shutdown() }
        let t = InMemoryTransport(broker: broker)
        let q = try await t.declare(QueueSpec(name: "retry", durable: false, deadLetterExchange: ""))
        try await t.publish(Message(body: [1]), exchange: "", routingKey: q)
        let subscription = try await t.subscribe(queue: q, prefetch: 1)
        try await withTimeout(.seconds(10)) {
            var iterator = subscription.deliveries.makeAsyncIterator()
            for round in 1...3 {
                let d = try #require(try await iterator.next())
                let records = d.message.headers["x-death"].map(BrokerState.deathTables) ?? []
                #expect(records.count == (round == 1 ? 0 : 1))
                if round > 1 { #expect(records.first?["count"]?.intValue == Int64(round - 1)) }
                try await subscription.reject(d, requeue: false)
            }
        }
        await subscription.cancel()
    }

    /// Deadline timers: several delay queues with no consumer fire close to their TTLs.
    /// On a manual clock: each delay queue's message stays put until its TTL has passed (1 ms
    /// before: still queued; 1 ms after: delivered) — no wall-clock race, however loaded.
    @Test func delayQueuesFireAtTheirInstant() async throws {
        let clock = ManualClock()
        let broker = InMemoryBroker(clock: clock)
        defer { broker.shutdown() }
        let t = InMemoryTransport(broker: broker)
        let target = try await t.declare(QueueSpec(name: "sr.deadlines", durable: false))
        let delays: [Duration] = [.milliseconds(20), .milliseconds(60), .milliseconds(100), .milliseconds(140)]
        let subscription = try await t.subscribe(queue: target, prefetch: 0)
        var queues: [String] = []
        for (i, delay) in delays.enumerated() {
            queues.append(try await t.declare(QueueSpec(
                name: "sr.delay.\(delay)", durable: false, messageTTL: delay, expires: .seconds(10),
                deadLetterExchange: "", deadLetterRoutingKey: target)))
            try await t.publish(Message(body: [UInt8(i)]), exchange: "", routingKey: queues[i])
        }
        let fired = try await withTimeout(.seconds(60)) { [queues] in
            var order: [UInt8] = []
            var iterator = subscription.deliveries.makeAsyncIterator()
            for (i, delay) in delays.enumerated() {
                clock.advance(to: delay - .milliseconds(1))
                #expect(try await t.messageCount(queue: queues[i]) == 1, "fired before its \(delay)")
                clock.advance(to: delay + .milliseconds(1))
                let d = try #require(try await iterator.next())
                order.append(d.message.body[0])
                #expect(try await t.messageCount(queue: queues[i]) == 0)
            }
            return order
        }
        #expect(fired == [0, 1, 2, 3])
        await subscription.cancel()
    }

    /// 4 producers × 2000 messages, 3 consumers, one of which dies holding unacked deliveries:
    /// every message is acked exactly once, and what the dead one held was redelivered.
    @Test func concurrentLoadLosesNothing() async throws {
        let broker = InMemoryBroker()
        defer { broker.shutdown() }
        let producers = 4, perProducer = 2000, total = producers * perProducer
        let setup = InMemoryTransport(broker: broker)
        let q = try await setup.declare(QueueSpec(name: "load", durable: false, maxPriority: 3))
        let survivors = [InMemoryTransport(broker: broker), InMemoryTransport(broker: broker)]
        let subscriptions = try await survivors.asyncMap { try await $0.subscribe(queue: q, prefetch: 10) }
        let dying = InMemoryTransport(broker: broker)
        let dyingSubscription = try await dying.subscribe(queue: q, prefetch: 10)
        let ledger = AckLedger(expected: total, subscriptions: subscriptions)

        try await withTimeout(.seconds(60)) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for p in 0..<producers {
                    group.addTask {
                        let t = InMemoryTransport(broker: broker)
                        for i in 0..<perProducer {
                            let m = Message(body: [UInt8(i & 0xFF)], priority: UInt8(i % 4), messageID: "\(p)-\(i)")
                            try await t.publish(m, exchange: "", routingKey: q)
                        }
                        await t.close()
                    }
                }
                for s in subscriptions {
                    group.addTask {
                        for try await d in s.deliveries {
                            try await s.ack(d)
                            await ledger.record(d)
                        }
                    }
                }
                group.addTask {
                    // Acks 5, then dies on its 10th delivery holding at least 5. Its first 10
                    // deliveries need no ack (prefetch 10), so it always gets that far.
                    var received = 0
                    for try await d in dyingSubscription.deliveries {
                        received += 1
                        if received <= 5 {
                            try await dyingSubscription.ack(d)
                            await ledger.record(d)
                        } else if received == 10 {
                            await dying.close()
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        let (counts, redeliveries) = ledger.state.withLock { ($0.acks, $0.redeliveries) }
        #expect(counts.count == total)
        #expect(counts.values.allSatisfy { $0 == 1 })
        #expect(redeliveries >= 5)
        #expect(try await setup.messageCount(queue: q) == 0)
    }

    @Test func shutdownEndsSubscriptionsAndOperations() async throws {
        let broker = InMemoryBroker()
        let t = InMemoryTransport(broker: broker)
        let q = try await t.declare(QueueSpec(name: "q", durable: false, messageTTL: .seconds(30), expires: .seconds(30)))
        try await t.publish(Message(body: [1]), exchange: "", routingKey: q)
        let subscription = try await t.subscribe(queue: q, prefetch: 1)
        broker.shutdown()
        let received = try await withTimeout(.seconds(10)) {
            var received = 0
            for try await _ in subscription.deliveries { received += 1 }  // ends without error
            return received
        }
        #expect(received <= 1)
        await #expect(throws: TransportError.self) { try await t.publish(Message(), exchange: "", routingKey: q) }
        await #expect(throws: TransportError.self) { try await InMemoryTransport(broker: broker).messageCount(queue: q) }
        broker.shutdown()  // idempotent
    }

    /// A reader cancelled while waiting ends the stream; the broker must then cancel that
    /// consumer instead of handing messages to a stream nobody reads.
    @Test func cancelledReaderDoesNotSwallowMessages() async throws {
        let broker = InMemoryBroker()
        defer { broker.shutdown() }
        let t = InMemoryTransport(broker: broker)
        let q = try await t.declare(QueueSpec(name: "q", durable: false))
        let subscription = try await t.subscribe(queue: q, prefetch: 5)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = try? await subscription.deliveries.first { _ in true } }
            group.cancelAll()
        }
        try await t.publish(Message(body: [1]), exchange: "", routingKey: q)
        try await t.publish(Message(body: [2]), exchange: "", routingKey: q)
        #expect(try await t.messageCount(queue: q) == 2)
    }
}

// MARK: Helpers

/// Counts acks per message ID; the ack that completes the set ends the survivors' subscriptions.
private final class AckLedger: Sendable {
    let expected: Int
    let subscriptions: [Subscription]
    let state = Mutex<(acks: [String: Int], redeliveries: Int)>(([:], 0))

    init(expected: Int, subscriptions: [Subscription]) {
        self.expected = expected
        self.subscriptions = subscriptions
    }

    func record(_ d: Delivery) async {
        let complete = state.withLock { s in
            s.acks[d.message.messageID!, default: 0] += 1
            if d.redelivered { s.redeliveries += 1 }
            return s.acks.count == expected
        }
        if complete { for s in subscriptions { await s.cancel() } }
    }
}

/// Polls `condition` (for broker effects with no event to await, like a queue deletion),
/// failing after `timeout`.
private func waitUntil(_ what: String, within timeout: Duration = .seconds(60),
                       _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("Not within \(timeout): \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

private struct TimedOut: Error, CustomStringConvertible {
    let limit: Duration
    var description: String { "timed out after \(limit)" }
}

/// Runs `operation`, cancelling it and failing if it takes longer than `limit`.
private func withTimeout<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimedOut(limit: limit)
        }
        defer { group.cancelAll() }
        return try await group.next()!!
    }
}

extension Array where Element: Sendable {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
