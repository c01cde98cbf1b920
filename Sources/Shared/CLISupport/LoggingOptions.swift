// `--log-level` of the long-running roles, and the one place their logging is bootstrapped.
import ArgumentParser

public struct LoggingOptions: ParsableArguments {
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error (default: $SR_LOG_LEVEL or info).")
    public var logLevel: String?

    public init() {}

    /// Bootstraps swift-log for this process at the chosen level (call once, from `run()`).
    public func bootstrap() { RoleEnvironment.bootstrapLogging(level: logLevel) }
}
