// Sends a message that cannot be processed to sr.dlx with the reason, so nothing is lost
// silently and nothing is retried forever.
import SRTransport

public enum DeadLetter {
    /// Publishes `message` (headers kept) to sr.dlx with `sr-dead-reason`, `sr-dead-queue`.
    public static func send(_ message: Message, reason: String, from queue: String, on transport: any Transport) async throws {
        var m = message
        m.headers[Header.deadReason] = .string(reason)
        m.headers["sr-dead-queue"] = .string(queue)
        m.expiration = nil
        try await transport.publish(m, exchange: Topology.deadLetterExchange, routingKey: queue)
    }
}
