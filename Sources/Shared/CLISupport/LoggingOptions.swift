// `--log-level` and `--log-format` of the long-running roles, and the one place their logging
// is bootstrapped.
import ArgumentParser

public struct LoggingOptions: ParsableArguments {
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical (default: $SR_LOG_LEVEL or info).")
    public var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text (key=value metadata) or json (one object per line: ts, level, label, message, then the metadata; for log shippers) (default: $SR_LOG_FORMAT or text).")
    public var logFormat: String?

    public init() {}

    public func validate() throws {
        if case .failure(let e) = RoleEnvironment.logLevel(logLevel) { throw ValidationError(e.description) }
        if case .failure(let e) = RoleEnvironment.logFormat(logFormat) { throw ValidationError(e.description) }
    }

    /// Bootstraps swift-log for this process at the chosen level and format (once, from `run()`).
    public func bootstrap() { RoleEnvironment.bootstrapLogging(level: logLevel, format: logFormat) }
}
