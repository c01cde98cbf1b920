// srconsume: a stateless worker — takes tasks by layer priority, computes exact chunk products,
// publishes partials (confirmed), then acks. Stops gracefully on SIGTERM/SIGINT.
import ArgumentParser
import Logging
import ServiceLifecycle
import SRCLISupport
import SRRoleSupport
import SRKernels
import SRWorker
import SRTransport
import Foundation

@main
struct Consume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "srconsume",
        abstract: "Compute mini-jobs (exact chunk products) from the sr.tasks queue.",
        discussion: """
            Run any number of replicas. A task whose deadline has passed is skipped (never \
            compute dead work); an undecodable task goes to sr.dead with the reason. Registered \
            matrices are loaded from the operand store and their chunk planes cached.
            """)

    @Option(help: "Unacknowledged tasks held at once; 1–2 keeps layer priority effective under backlog.")
    var prefetch: Int = 1

    @Option(name: .customLong("cache-mb"), help: "Memory for cached chunk planes, in MiB.")
    var cacheMB: Int = 1024

    @Option(help: "Worker name in logs and partials (default: srconsume-<pid>).")
    var name: String?

    @OptionGroup var brokerOptions: BrokerOptions

    @OptionGroup var storeOptions: StoreOptions

    @Option(name: .customLong("kernel-nice"), help: ArgumentHelp("Scheduling priority of the thread that runs kernels: a niceness 0–19, or 'idle' (Linux SCHED_IDLE: any waking message thread preempts the kernel at once, but the kernel gets almost no CPU while other busy programs run). The consumer's messaging threads, and a broker or aggregator on the same machine, take the CPU before it, so no message waits behind a kernel's time slice. 0 on a machine of its own changes nothing measurable.", valueName: "0-19|idle"))
    var kernelNice: String = "10"

    @OptionGroup var loggingOptions: LoggingOptions

    @OptionGroup var metricsOptions: MetricsOptions

    func validate() throws {
        guard (1...1000).contains(prefetch) else { throw ValidationError("--prefetch must be in 1...1000") }
        guard cacheMB >= 0 else { throw ValidationError("--cache-mb must be ≥ 0") }
        _ = try kernelPriority()
    }

    func kernelPriority() throws -> ThreadPriority {
        if kernelNice == "idle" { return .idle }
        guard let n = Int32(kernelNice), (0...19).contains(n) else {
            throw ValidationError("--kernel-nice must be a niceness 0...19 or 'idle', not '\(kernelNice)'")
        }
        return .nice(n)
    }

    func run() async throws {
        loggingOptions.bootstrap()
        BLAS.setThreadCount(1)   // parallelism comes from replicas
        let logger = Logger(label: "srconsume")
        let metrics = try metricsOptions.start(logger: logger)
        defer { metrics?.stop() }
        let transport = try await Connector.connect(brokerOptions.url, logger: logger)
        var config = TaskWorker.Configuration()
        config.prefetch = prefetch
        config.cacheBytes = cacheMB << 20
        config.name = name ?? "srconsume-\(getpid())"
        config.kernelPriority = try kernelPriority()
        if metrics != nil { config.queueSampling = MetricsOptions.queueSampling }
        let worker = TaskWorker(transport: transport, store: storeOptions.operandStore, configuration: config, logger: logger)
        let group = ServiceGroup(services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
        await transport.close()
    }
}
