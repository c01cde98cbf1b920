// Conformance: what a message carries end to end, and how each kind of exchange routes it.
import SRTransport

enum RoutingCases {
    static let all: [ConformanceCase] = [roundTrip, defaultExchange, direct, topic, fanout, missingExchange, serverNamedExclusive]

    static let roundTrip = ConformanceCase("round-trip", "publish → consume keeps body, headers and properties") { h in
        let t = try await h.connect()
        let q = try await h.scratchQueue(t, "q")
        let headers: [String: HeaderValue] = [
            "text": .string("naïve ✓ 数"), "empty": .string(""),
            "int": .int(-1_234_567_890_123), "max": .int(.max), "min": .int(.min),
            "double": .double(-3.25e-7), "true": .bool(true), "false": .bool(false),
            "bytes": .bytes([0, 1, 127, 128, 254, 255]),
        ]
        let full = Message(body: [0, 1, 2, 128, 255] + Array("body".utf8), headers: headers, priority: 7,
                           expiration: .seconds(60), messageID: "job-42/task-7", contentType: "application/x-sr",
                           persistent: true)
        let bare = Message(body: [], persistent: false)
        try await t.publish(full, exchange: "", routingKey: q)
        try await t.publish(bare, exchange: "", routingKey: q)
        let inbox = try await h.subscribe(t, q, prefetch: 10)

        let d = try await inbox.next()
        let m = d.message
        try check(m.body == full.body, "body \(m.body), expected \(full.body)")
        for (key, value) in headers {
            try check(m.headers[key] == value, "header \(key): \(String(describing: m.headers[key])), expected \(value)")
        }
        try check(m.headers.count == headers.count, "headers \(m.headers.keys.sorted()), expected \(headers.keys.sorted())")
        try check(m.priority == 7, "priority \(String(describing: m.priority)), expected 7")
        try check(m.expiration == .seconds(60), "expiration \(String(describing: m.expiration)), expected 60 s")
        try check(m.messageID == "job-42/task-7", "messageID \(String(describing: m.messageID))")
        try check(m.contentType == "application/x-sr", "contentType \(String(describing: m.contentType))")
        try check(m.persistent, "persistent lost")
        try check(d.exchange == "" && d.routingKey == q, "delivered via '\(d.exchange)' / '\(d.routingKey)', expected '' / \(q)")
        try check(!d.redelivered, "first delivery marked redelivered")

        let b = try await inbox.next()
        try check(b.message.body.isEmpty, "empty body came back as \(b.message.body.count) bytes")
        try check(b.message.headers.isEmpty, "unset headers came back as \(b.message.headers)")
        try check(b.message.priority == nil, "unset priority came back as \(String(describing: b.message.priority))")
        try check(b.message.expiration == nil, "unset expiration came back as \(String(describing: b.message.expiration))")
        try check(b.message.messageID == nil && b.message.contentType == nil, "unset messageID/contentType came back set")
        try check(!b.message.persistent, "non-persistent message came back persistent")
        try check(d.tag != b.tag, "two deliveries share the tag \(d.tag)")
        try await inbox.ack([d, b])
    }

    static let defaultExchange = ConformanceCase("default-exchange", "the default exchange routes by queue name; unroutable is dropped") { h in
        let t = try await h.connect()
        let a = try await h.scratchQueue(t, "a")
        let b = try await h.scratchQueue(t, "b")
        try await t.publish(.text("to a"), exchange: "", routingKey: a)
        try await t.publish(.text("to b"), exchange: "", routingKey: b)
        try await t.publish(.text("to nowhere"), exchange: "", routingKey: h.name("no-such-queue"))
        try check(try await t.messageCount(queue: a) == 1, "queue a should hold 1 message")
        try check(try await t.messageCount(queue: b) == 1, "queue b should hold 1 message")
        let inbox = try await h.subscribe(t, a, prefetch: 1)
        let d = try await inbox.next()
        try check(d.text == "to a" && d.routingKey == a, "queue a got \(d.text) via \(d.routingKey)")
        try await inbox.ack(d)
    }

    static let direct = ConformanceCase("direct-exchange", "a direct exchange routes by exact key, once per queue") { h in
        let t = try await h.connect()
        let x = try await h.scratchExchange(t, "x", .direct)
        let q1 = try await h.scratchQueue(t, "q1")
        let q2 = try await h.scratchQueue(t, "q2")
        try await t.bind(BindingSpec(queue: q1, exchange: x, routingKey: "red"))
        try await t.bind(BindingSpec(queue: q1, exchange: x, routingKey: "green"))
        try await t.bind(BindingSpec(queue: q1, exchange: x, routingKey: "green"))  // idempotent
        try await t.bind(BindingSpec(queue: q2, exchange: x, routingKey: "green"))
        for key in ["red", "green", "blue", "gre"] { try await t.publish(.text(key), exchange: x, routingKey: key) }
        try check(try await t.messageCount(queue: q1) == 2, "q1 (red, green) should hold 2")
        try check(try await t.messageCount(queue: q2) == 1, "q2 (green) should hold 1")
        let i1 = try await h.subscribe(t, q1, prefetch: 10)
        let got = try await i1.next(2)
        try check(got.map(\.text) == ["red", "green"], "q1 got \(got.map(\.text))")
        try check(got.allSatisfy { $0.exchange == x && $0.routingKey == $0.text }, "exchange/routing key not kept")
        try await i1.ack(got)
    }

    static let topic = ConformanceCase("topic-exchange", "a topic exchange matches * (one word) and # (zero or more)") { h in
        let t = try await h.connect()
        let x = try await h.scratchExchange(t, "outputs", .topic)
        let finals = try await h.scratchQueue(t, "finals")
        let all = try await h.scratchQueue(t, "all")
        try await t.bind(BindingSpec(queue: finals, exchange: x, routingKey: "job.*.final"))
        try await t.bind(BindingSpec(queue: all, exchange: x, routingKey: "job.#"))
        let keys = ["job.7.final", "job.7.resolution.2", "job", "job.7.8.final", "jobs.7.final", "other.job.final", "job7.final"]
        for key in keys { try await t.publish(.text(key), exchange: x, routingKey: key) }
        try check(try await t.messageCount(queue: finals) == 1, "job.*.final should match only job.7.final")
        try check(try await t.messageCount(queue: all) == 4, "job.# should match 4 keys")
        let fi = try await h.subscribe(t, finals, prefetch: 10)
        let f = try await fi.next()
        try check(f.text == "job.7.final" && f.routingKey == "job.7.final", "job.*.final got \(f.text)")
        let ai = try await h.subscribe(t, all, prefetch: 10)
        let got = try await ai.next(4).map(\.text)
        try check(got == ["job.7.final", "job.7.resolution.2", "job", "job.7.8.final"], "job.# got \(got)")
        try await fi.ack(f)
    }

    static let fanout = ConformanceCase("fanout-exchange", "a fanout exchange copies to every bound queue, ignoring keys") { h in
        let t = try await h.connect()
        let x = try await h.scratchExchange(t, "fan", .fanout)
        let q1 = try await h.scratchQueue(t, "q1")
        let q2 = try await h.scratchQueue(t, "q2")
        try await t.bind(BindingSpec(queue: q1, exchange: x, routingKey: "x"))
        try await t.bind(BindingSpec(queue: q2, exchange: x, routingKey: "y"))
        try await t.publish(.text("hello"), exchange: x, routingKey: "anything")
        for q in [q1, q2] {
            let inbox = try await h.subscribe(t, q, prefetch: 1)
            let d = try await inbox.next()
            try check(d.text == "hello" && d.routingKey == "anything" && d.exchange == x, "\(q) got \(d.text) via \(d.routingKey)")
            try await inbox.ack(d)
        }
    }

    static let missingExchange = ConformanceCase("missing-exchange", "publishing to a missing exchange fails with .notFound; the connection stays usable") { h in
        let t = try await h.connect()
        let q = try await h.scratchQueue(t, "q")
        try await expectError(.notFound, "publish to a missing exchange") {
            try await t.publish(.text("lost"), exchange: h.name("missing"), routingKey: q)
        }
        try await t.publish(.text("after"), exchange: "", routingKey: q)
        try check(try await t.messageCount(queue: q) == 1, "publish after the failure did not arrive")
        try await expectError(.notFound, "bind to a missing exchange") {
            try await t.bind(BindingSpec(queue: q, exchange: h.name("missing"), routingKey: "k"))
        }
        try await expectError(.notFound, "subscribe to a missing queue") {
            try await t.subscribe(queue: h.name("missing"), prefetch: 1)
        }
        let inbox = try await h.subscribe(t, q, prefetch: 1)
        let d = try await inbox.next()
        try check(d.text == "after", "got \(d.text)")
        try await inbox.ack(d)
    }

    static let serverNamedExclusive = ConformanceCase("server-named", "a server-named exclusive queue bound to a topic exchange gets matching messages and goes with its connection") { h in
        let t = try await h.connect()
        let x = try await h.scratchExchange(t, "outputs", .topic)
        let spec = QueueSpec(name: "", durable: false, exclusive: true, autoDelete: true)
        let q = try await t.declare(spec)
        let other = try await t.declare(spec)
        try check(q.hasPrefix("amq.gen-"), "server-chosen name \(q) should start with amq.gen-")
        try check(q != other, "two server-named queues share the name \(q)")
        try await t.bind(BindingSpec(queue: q, exchange: x, routingKey: "job.42.#"))
        for key in ["job.42.resolution.0", "job.41.final", "job.42.final", "job.420.final"] {
            try await t.publish(.text(key), exchange: x, routingKey: key)
        }
        let inbox = try await h.subscribe(t, q, prefetch: 10)
        let got = try await inbox.next(2)
        try check(got.map(\.text) == ["job.42.resolution.0", "job.42.final"], "got \(got.map(\.text))")
        try await inbox.ack(got)
        try await inbox.expectNothing()
        // An exclusive queue belongs to its connection and goes when it closes.
        await t.close()
        let observer = try await h.connect()
        try await eventually("exclusive queue \(q) deleted after its connection closed") {
            try await isDeleted(q, on: observer)
        }
    }
}
