// Opens the broker connection a role asks for: AMQP for amqp:// and amqps:// URLs.
import Logging

public enum Connector {
    public static func connect(_ url: String, logger: Logger) async throws -> any Transport {
        throw TransportError(.connectionFailed, "the AMQP transport is not built in yet (\(url))")
    }
}
