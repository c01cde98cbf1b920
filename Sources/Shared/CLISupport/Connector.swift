// Opens the broker connection a role asks for: AMQP (rabbitmq-c) for amqp:// and amqps:// URLs.
import SRAMQP
import SRTransport
import Logging

public enum Connector {
    /// Connects to RabbitMQ at `url`; fails fast with a message naming the URL (password
    /// hidden) and what to check when the broker is unreachable or refuses the login.
    public static func connect(_ url: String, logger: Logger) async throws -> any Transport {
        try await AMQPTransport.connect(url, logger: logger)
    }
}
