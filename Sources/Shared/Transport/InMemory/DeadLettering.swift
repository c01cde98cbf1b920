// Dead-lettering as RabbitMQ 3.x does it: republish to the queue's dead-letter exchange with an
// `x-death` record, without the per-message expiration, dropping automatic cycles.
import SRCore

enum DeathReason: String {
    case rejected, expired
}

extension BrokerState {
    /// Republishes `m` (which has left `q`) to `q`'s dead-letter exchange, or drops it when `q`
    /// has none or the exchange is missing (RabbitMQ drops those silently too).
    func deadLetter(_ m: QueuedMessage, from q: QueueState, reason: DeathReason, _ op: inout BrokerOperation) {
        guard let exchange = q.spec.deadLetterExchange else { return }
        let key = q.spec.deadLetterRoutingKey ?? m.routingKey
        guard let targets = try? route(exchange: exchange, key: key), !targets.isEmpty else { return }
        var message = m.message
        message.headers = Self.recordingDeath(
            in: message.headers, queue: q.spec.name, reason: reason, exchange: m.exchange,
            routingKey: m.routingKey, originalExpiration: message.expiration)
        message.expiration = nil  // else it would expire again in the dead-letter queue
        let deaths = message.headers["x-death"].map(Self.deathTables) ?? []
        for target in targets where reason == .rejected || !Self.isCycle(deaths, reaching: target.spec.name) {
            enqueue(message, exchange: exchange, routingKey: key, into: target, &op)
        }
    }

    /// Adds this death to `x-death` (newest first; a repeat of the same queue, reason and
    /// exchange increments its count and moves to the front) and sets the `x-first-death-*`
    /// headers once. RabbitMQ also records a `time` timestamp, which HeaderValue cannot carry.
    static func recordingDeath(in headers: [String: HeaderValue], queue: String, reason: DeathReason,
                               exchange: String, routingKey: String,
                               originalExpiration: Duration?) -> [String: HeaderValue] {
        var headers = headers
        var deaths: [HeaderValue] = if case .array(let a)? = headers["x-death"] { a } else { [] }
        let same = deaths.firstIndex { value in
            guard case .table(let t) = value else { return false }
            return t["queue"]?.stringValue == queue && t["reason"]?.stringValue == reason.rawValue
                && t["exchange"]?.stringValue == exchange
        }
        if let same, case .table(var entry) = deaths.remove(at: same) {
            entry["count"] = .int((entry["count"]?.intValue ?? 0) + 1)
            deaths.insert(.table(entry), at: 0)
        } else {
            var entry: [String: HeaderValue] = [
                "count": .int(1), "reason": .string(reason.rawValue), "queue": .string(queue),
                "exchange": .string(exchange), "routing-keys": .array([.string(routingKey)]),
            ]
            if let originalExpiration { entry["original-expiration"] = .string(String(originalExpiration.wholeMilliseconds)) }
            deaths.insert(.table(entry), at: 0)
        }
        headers["x-death"] = .array(deaths)
        if headers["x-first-death-reason"] == nil {
            headers["x-first-death-reason"] = .string(reason.rawValue)
            headers["x-first-death-queue"] = .string(queue)
            headers["x-first-death-exchange"] = .string(exchange)
        }
        return headers
    }

    static func deathTables(_ value: HeaderValue) -> [[String: HeaderValue]] {
        guard case .array(let entries) = value else { return [] }
        return entries.compactMap { if case .table(let t) = $0 { t } else { nil } }
    }

    /// RabbitMQ's rule: a message that would reach a queue it already died in, with no
    /// rejection since, is in an automatic cycle (e.g. TTL back to itself) and is dropped.
    static func isCycle(_ deaths: [[String: HeaderValue]], reaching queue: String) -> Bool {
        for death in deaths {  // newest first
            if death["reason"]?.stringValue == DeathReason.rejected.rawValue { return false }
            if death["queue"]?.stringValue == queue { return true }
        }
        return false
    }
}
