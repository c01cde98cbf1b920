// Where the integration tests find their RabbitMQ: SR_AMQP_URL, set by scripts/test.sh after
// it starts a private broker. With SR_REQUIRE_BROKER=1 (CI) a missing URL fails the run.
import Foundation

enum BrokerEnvironment {
    static var url: String? { ProcessInfo.processInfo.environment["SR_AMQP_URL"] }
    static var required: Bool { ProcessInfo.processInfo.environment["SR_REQUIRE_BROKER"] == "1" }
    /// True when integration tests should run (a broker URL is set, or one is required).
    static var enabled: Bool { url != nil || required }
}
