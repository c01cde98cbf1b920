// `--broker`, as every executable that talks to RabbitMQ spells it.
import ArgumentParser

public struct BrokerOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "RabbitMQ URL, amqp[s]://user:pass@host:port/vhost (default: $SR_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672/ for local development).",
        valueName: "url"))
    public var broker: String?

    public init() {}

    /// The flag, else $SR_AMQP_URL, else the local development default.
    public var url: String { RoleEnvironment.brokerURL(broker) }
}
