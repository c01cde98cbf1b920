// sraggregate: per job, accumulates partial products into resolutions, publishes each one
// (one log line per refinement) and emits the best result when the deadline fires.
import ArgumentParser
import Logging
import ServiceLifecycle
import SRCLISupport
import SRAggregatorService
import SRTransport

@main
struct Aggregate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sraggregate",
        abstract: "Refine each job's result layer by layer; emit the best available result at its deadline.",
        discussion: """
            Consumes sr.jobs, sr.partials and sr.deadlines and publishes to the topic exchange \
            sr.outputs (job.<id>.resolution.<k>, job.<id>.final). Inputs stay unacknowledged \
            until their job's final output is confirmed, so a crash (even kill -9) loses no job: \
            the broker redelivers them to the restarted aggregator.
            """)

    @Option(name: .customLong("safety-grace"), help: "Answer a job this long after its deadline by this machine's clock if the deadline message has not come (0: clocks synchronised by NTP; raise it by the worst clock skew to producers).")
    var safetyGrace: Duration = .zero

    @OptionGroup var brokerOptions: BrokerOptions

    @Option(help: ArgumentHelp("Operand store directory, shared with the producers: the bound statistics of registered matrices are read there (default: $SR_STORE, else ./sr-store).", valueName: "dir"))
    var store: String?

    @OptionGroup var loggingOptions: LoggingOptions

    @OptionGroup var metricsOptions: MetricsOptions

    func run() async throws {
        loggingOptions.bootstrap()
        let logger = Logger(label: "sraggregate")
        let metrics = try metricsOptions.start(logger: logger)
        defer { metrics?.stop() }
        let transport = try await Connector.connect(brokerOptions.url, logger: logger)
        var config = AggregatorService.Configuration()
        config.safetyGrace = safetyGrace
        if metrics != nil { config.queueSampling = MetricsOptions.queueSampling }
        let service = AggregatorService(transport: transport, store: RoleEnvironment.store(store), configuration: config, logger: logger)
        let group = ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
        await transport.close()
    }
}

