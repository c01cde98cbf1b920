// Conformance: at-least-once. Unacked deliveries come back (marked redelivered) after a
// requeue, a cancel or a closed connection; acked ones never do.
import SRTransport

enum RedeliveryCases {
    static let all: [ConformanceCase] = [rejectRequeue, afterCancel, afterClose, ackRemoves]

    static let rejectRequeue = ConformanceCase("reject-requeue", "reject(requeue: true) puts the message back at its position, redelivered") { h in
        let t = try await h.connect()
        let q = try await h.scratchQueue(t, "q")
        for text in ["a", "b"] { try await t.publish(.text(text), exchange: "", routingKey: q) }
        let inbox = try await h.subscribe(t, q, prefetch: 1)
        let a = try await inbox.next()
        try check(a.text == "a" && !a.redelivered, "first delivery \(a.text), redelivered \(a.redelivered)")
        try await inbox.reject(a, requeue: true)
        let again = try await inbox.next()
        try check(again.text == "a" && again.redelivered, "after requeue got \(again.text), redelivered \(again.redelivered)")
        try await inbox.ack(again)
        let b = try await inbox.next()
        try check(b.text == "b" && !b.redelivered, "then \(b.text), redelivered \(b.redelivered)")
        try await inbox.ack(b)
    }

    static let afterCancel = ConformanceCase("redeliver-after-cancel", "cancel() ends the deliveries and returns unacked messages, in order, redelivered") { h in
        let t = try await h.connect()
        let q = try await h.scratchQueue(t, "q")
        for text in ["a", "b", "c"] { try await t.publish(.text(text), exchange: "", routingKey: q) }
        let first = try await h.subscribe(t, q, prefetch: 10)
        let held = try await first.next(3)
        try check(held.map(\.text) == ["a", "b", "c"] && held.allSatisfy { !$0.redelivered }, "got \(held.map(\.text))")
        await first.cancel()
        try await first.expectEnd()
        // A tag from the cancelled subscription is stale: acking it must not settle anything
        // (in particular not the same message's new delivery). It may be ignored or throw.
        try? await first.ack(held[0])
        let second = try await h.subscribe(t, q, prefetch: 10)
        let again = try await second.next(3)
        try check(again.map(\.text) == ["a", "b", "c"], "redelivered \(again.map(\.text)), expected a, b, c")
        try check(again.allSatisfy(\.redelivered), "redelivered flags \(again.map(\.redelivered))")
        try await second.ack(again)
        try await second.expectNothing()
    }

    static let afterClose = ConformanceCase("redeliver-after-close", "closing a connection returns its unacked messages to another consumer, redelivered") { h in
        let dying = try await h.connect()
        let q = try await h.scratchQueue(dying, "q")
        for text in ["a", "b"] { try await dying.publish(.text(text), exchange: "", routingKey: q) }
        let doomed = try await h.subscribe(dying, q, prefetch: 10)
        _ = try await doomed.next(2)
        await dying.close()
        let survivor = try await h.connect()
        let inbox = try await h.subscribe(survivor, q, prefetch: 10)
        let again = try await inbox.next(2)
        try check(again.map(\.text) == ["a", "b"], "redelivered \(again.map(\.text))")
        try check(again.allSatisfy(\.redelivered), "redelivered flags \(again.map(\.redelivered))")
        try await inbox.ack(again)
    }

    static let ackRemoves = ConformanceCase("ack-removes", "acked messages are gone for good; only the unacked one comes back") { h in
        let first = try await h.connect()
        let q = try await h.scratchQueue(first, "q")
        for text in ["a", "b", "c"] { try await first.publish(.text(text), exchange: "", routingKey: q) }
        let inbox = try await h.subscribe(first, q, prefetch: 10)
        let got = try await inbox.next(3)
        try await inbox.ack(got[0])
        try await inbox.ack(got[2])
        await first.close()
        let second = try await h.connect()
        let again = try await h.subscribe(second, q, prefetch: 10)
        let b = try await again.next()
        try check(b.text == "b" && b.redelivered, "got \(b.text), redelivered \(b.redelivered)")
        try await again.ack(b)
        try await again.expectNothing()
        try check(try await second.messageCount(queue: q) == 0, "acked messages are back in the queue")
    }
}
