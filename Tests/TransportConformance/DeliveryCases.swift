// Conformance: which message a consumer gets next (priority, FIFO), how many at once
// (prefetch), and how consumers of one queue share it.
import SRTransport

enum DeliveryCases {
    static let all: [ConformanceCase] = [priorityBacklog, prefetchBound, competingConsumers]

    static let priorityBacklog = ConformanceCase("priority", "a backlog is served highest priority first, FIFO within a priority, above-max capped") { h in
        let t = try await h.connect()
        let q = try await h.scratchQueue(t, "tasks", maxPriority: 9)
        // Index = body; nil = no priority (0); 200 > x-max-priority 9 counts as 9.
        let priorities: [UInt8?] = [nil, 3, 9, 3, 0, 200, 5, 9, 1, 3]
        for (i, p) in priorities.enumerated() { try await t.publish(.text("\(i)", priority: p), exchange: "", routingKey: q) }
        let expected = ["2", "5", "7", "6", "1", "3", "9", "8", "0", "4"]
        let inbox = try await h.subscribe(t, q, prefetch: 1)
        var order: [String] = []
        for _ in expected {
            let d = try await inbox.next()
            order.append(d.text)
            // Capping decides the order only; the message keeps the priority it was sent with.
            let sent = Int(d.text).map { priorities[$0] }
            try check(sent == d.message.priority, "message \(d.text) came with priority \(String(describing: d.message.priority))")
            try await inbox.ack(d)
        }
        try check(order == expected, "delivery order \(order), expected \(expected)")
    }

    static let prefetchBound = ConformanceCase("prefetch", "prefetch N: at most N unacked; an ack lets the next one through") { h in
        let t = try await h.connect()
        let q = try await h.scratchQueue(t, "q")
        for i in 0..<5 { try await t.publish(.text("\(i)"), exchange: "", routingKey: q) }
        let inbox = try await h.subscribe(t, q, prefetch: 2)
        let first = try await inbox.next(2)
        try check(first.map(\.text) == ["0", "1"], "got \(first.map(\.text))")
        try await inbox.expectNothing()
        try check(try await t.messageCount(queue: q) == 3, "3 should still be ready with 2 unacked")
        try await inbox.ack(first[0])
        let third = try await inbox.next()
        try check(third.text == "2", "after one ack got \(third.text)")
        try await inbox.expectNothing()
        try await inbox.ack([first[1], third])
        let rest = try await inbox.next(2)
        try check(rest.map(\.text) == ["3", "4"], "got \(rest.map(\.text))")
        try await inbox.ack(rest)
    }

    static let competingConsumers = ConformanceCase("competing-consumers", "consumers of one queue share it, each within its own prefetch") { h in
        let t = try await h.connect()
        let q = try await h.scratchQueue(t, "q")
        let a = try await h.subscribe(t, q, prefetch: 1)
        let b = try await h.subscribe(t, q, prefetch: 1)
        for i in 0..<4 { try await t.publish(.text("\(i)"), exchange: "", routingKey: q) }
        let da = try await a.next()
        let db = try await b.next()
        try check(Set([da.text, db.text]) == ["0", "1"], "the first two went to \(da.text), \(db.text)")
        try await Inbox.expectNothing([a, b])
        try check(try await t.messageCount(queue: q) == 2, "2 should still be ready")
        try await a.ack(da)
        let next = try await a.next()
        try check(next.text == "2", "after its ack, a got \(next.text)")
        // b is still full, so the last one goes to a as well.
        try await a.ack(next)
        let last = try await a.next()
        try check(last.text == "3", "got \(last.text)")
        try await a.ack(last)
        try await b.ack(db)
    }
}
