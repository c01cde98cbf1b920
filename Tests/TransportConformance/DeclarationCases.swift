// Conformance: declaring topology (idempotent when equal, 406 when not), counting ready
// messages, auto-delete, and a closed connection.
import SRTransport

enum DeclarationCases {
    static let all: [ConformanceCase] = [redeclare, messageCount, autoDelete, closedTransport]

    static let redeclare = ConformanceCase("redeclare", "an identical redeclaration succeeds; a different one fails with .precondition") { h in
        let t = try await h.connect()
        let name = h.name("tasks")
        let spec = QueueSpec(name: name, durable: false, maxPriority: 5, messageTTL: .seconds(30), expires: .seconds(60))
        try check(try await t.declare(spec) == name, "declare returned another name")
        try check(try await t.declare(spec) == name, "identical redeclaration returned another name")
        try await t.publish(.text("kept"), exchange: "", routingKey: name)
        try await t.declare(spec)
        try check(try await t.messageCount(queue: name) == 1, "an identical redeclaration lost messages")

        let differing: [(String, QueueSpec)] = [
            ("x-max-priority", QueueSpec(name: name, durable: false, maxPriority: 6, messageTTL: .seconds(30), expires: .seconds(60))),
            ("x-message-ttl", QueueSpec(name: name, durable: false, maxPriority: 5, messageTTL: .seconds(31), expires: .seconds(60))),
            ("no x-message-ttl", QueueSpec(name: name, durable: false, maxPriority: 5, expires: .seconds(60))),
            ("x-dead-letter-exchange", QueueSpec(name: name, durable: false, maxPriority: 5, messageTTL: .seconds(30),
                                                 expires: .seconds(60), deadLetterExchange: "")),
        ]
        for (what, other) in differing {
            try await expectError(.precondition, "redeclare with a different \(what)") { try await t.declare(other) }
        }
        // The failed declarations must not have broken the connection or the queue.
        try check(try await t.messageCount(queue: name) == 1, "the queue lost its message after failed redeclarations")

        let x = h.name("x")
        try await t.declare(ExchangeSpec(name: x, kind: .direct, durable: false))
        try await t.declare(ExchangeSpec(name: x, kind: .direct, durable: false))
        try await expectError(.precondition, "redeclare a direct exchange as topic") {
            try await t.declare(ExchangeSpec(name: x, kind: .topic, durable: false))
        }
        try await t.bind(BindingSpec(queue: name, exchange: x, routingKey: "k"))
        try await t.publish(.text("via x"), exchange: x, routingKey: "k")
        try check(try await t.messageCount(queue: name) == 2, "the exchange stopped routing after a failed redeclaration")
    }

    static let messageCount = ConformanceCase("message-count", "messageCount counts ready messages, not unacked ones; unknown queue is .notFound") { h in
        let t = try await h.connect()
        try await expectError(.notFound, "messageCount of a missing queue") { try await t.messageCount(queue: h.name("missing")) }
        let q = try await h.scratchQueue(t, "q")
        try check(try await t.messageCount(queue: q) == 0, "a new queue is not empty")
        for i in 0..<3 { try await t.publish(.text("\(i)"), exchange: "", routingKey: q) }
        let count = try await t.messageCount(queue: q)
        try check(count == 3, "3 published, count \(count)")
        let inbox = try await h.subscribe(t, q, prefetch: 1)
        let first = try await inbox.next()
        try check(try await t.messageCount(queue: q) == 2, "one delivered (unacked) should leave 2 ready")
        try await inbox.ack(first)
        let second = try await inbox.next()
        try check(second.text == "1", "got \(second.text)")
        try check(try await t.messageCount(queue: q) == 1, "two delivered should leave 1 ready")
        await inbox.cancel()
        // The unacked second message goes back: ready again.
        try await eventually("the cancelled subscription's unacked message is ready again") {
            try await t.messageCount(queue: q) == 2
        }
    }

    static let autoDelete = ConformanceCase("auto-delete", "an auto-delete queue is deleted when its last consumer cancels, not before") { h in
        let t = try await h.connect()
        let q = try await t.declare(QueueSpec(name: h.name("auto"), durable: false, autoDelete: true))
        let first = try await h.subscribe(t, q, prefetch: 1)
        let second = try await h.subscribe(t, q, prefetch: 1)
        await first.cancel()
        try await t.publish(.text("still here"), exchange: "", routingKey: q)
        let d = try await second.next()
        try check(d.text == "still here", "got \(d.text)")
        try await second.ack(d)
        await second.cancel()
        try await eventually("auto-delete queue \(q) deleted after its last consumer cancelled") {
            try await isDeleted(q, on: t)
        }
    }

    static let closedTransport = ConformanceCase("closed-transport", "a closed transport fails operations with .closed and ends its subscriptions") { h in
        let t = try await h.connect()
        let q = try await h.scratchQueue(t, "q")
        let inbox = try await h.subscribe(t, q, prefetch: 1)
        await t.close()
        try await inbox.expectEnd()
        try await expectError(.closed, "publish on a closed transport") {
            try await t.publish(.text("x"), exchange: "", routingKey: q)
        }
        try await expectError(.closed, "messageCount on a closed transport") { try await t.messageCount(queue: q) }
        await t.close()  // closing twice is harmless
        let other = try await h.connect()
        try check(try await other.messageCount(queue: q) == 0, "another connection still sees the queue")
    }
}
