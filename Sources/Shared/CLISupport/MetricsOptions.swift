// `--metrics-port` and `--metrics-host` of the long-running roles, and the one place the
// Prometheus backend is bootstrapped: libraries count through swift-metrics and never bootstrap.
import ArgumentParser
import CoreMetrics
import Logging
import Prometheus

public struct MetricsOptions: ParsableArguments {
    @Option(name: .customLong("metrics-port"), help: ArgumentHelp(
        "Serve Prometheus metrics at http://HOST:PORT/metrics (default: $SR_METRICS_PORT, else off; 0 is off). docs/OPERATIONS.md lists them.",
        valueName: "port"))
    public var metricsPort: Int?

    @Option(name: .customLong("metrics-host"), help: ArgumentHelp(
        "Address the metrics endpoint binds: 127.0.0.1 (this machine only) or 0.0.0.0 (every interface, e.g. in a container) (default: $SR_METRICS_HOST, else 127.0.0.1).",
        valueName: "ip"))
    public var metricsHost: String?

    public init() {}

    /// How often a role samples its queues' depth while metrics are on.
    public static let queueSampling: Duration = .seconds(5)

    public func validate() throws {
        if case .failure(let e) = RoleEnvironment.metricsEndpoint(port: metricsPort, host: metricsHost) {
            throw ValidationError(e.description)
        }
    }

    /// Where metrics are served; nil: off.
    public var endpoint: MetricsEndpoint.Configuration? {
        try? RoleEnvironment.metricsEndpoint(port: metricsPort, host: metricsHost).get()
    }

    /// Bootstraps swift-metrics with a Prometheus registry and serves it (once per process, from
    /// `run()`); nil when metrics are off. Throws when the address cannot be bound.
    public func start(logger: Logger) throws -> MetricsEndpoint? {
        guard let configuration = endpoint else { return nil }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(Self.factory(registry))
        let endpoint = try MetricsEndpoint(configuration) { registry.emitToBuffer() }
        logger.info("serving metrics", metadata: ["url": "http://\(configuration.host):\(endpoint.port)\(configuration.path)"])
        return endpoint
    }

    /// The Prometheus factory with histogram buckets that fit each timer of the roles.
    static func factory(_ registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        let ms = { (v: Double) in Duration.nanoseconds(Int64(v * 1e6)) }
        factory.durationHistogramBuckets = [
            // Kernel time per task: 100 µs … 10 s.
            "sr_task_compute_seconds": [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10_000].map(ms),
            // Job creation → resolution k: 1 ms … 60 s.
            "sr_resolution_latency_seconds": [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000].map(ms),
            // How late a deadline fired: 0.5 ms … 10 s.
            "sr_deadline_lateness_seconds": [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 10_000].map(ms),
        ]
        return factory
    }
}
