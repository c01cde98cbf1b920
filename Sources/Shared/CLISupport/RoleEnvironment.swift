// Configuration every executable reads once at its edge: broker URL, store, log level.
import SRStore
import Foundation
import Logging

public enum RoleEnvironment {
    /// `--broker`, else $SR_AMQP_URL, else the local development default.
    public static func brokerURL(_ flag: String?) -> String {
        flag ?? ProcessInfo.processInfo.environment["SR_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2F"
    }

    /// `--store`, else $SR_STORE, else ./sr-store.
    public static func store(_ flag: String?) -> OperandStore {
        OperandStore(root: flag ?? ProcessInfo.processInfo.environment["SR_STORE"] ?? "sr-store")
    }

    /// Log lines as text (`key=value` metadata) or one JSON object per line.
    public enum LogFormat: String, Sendable, CaseIterable {
        case text, json
    }

    /// The level from `level` or $SR_LOG_LEVEL (default info); nil names what is wrong.
    public static func logLevel(_ level: String?) -> Result<Logger.Level, LoggingError> {
        let raw = level ?? ProcessInfo.processInfo.environment["SR_LOG_LEVEL"] ?? "info"
        guard let parsed = Logger.Level(rawValue: raw.lowercased()) else {
            return .failure(LoggingError("log level '\(raw)' is not one of trace, debug, info, notice, warning, error, critical"))
        }
        return .success(parsed)
    }

    /// The format from `format` or $SR_LOG_FORMAT (default text).
    public static func logFormat(_ format: String?) -> Result<LogFormat, LoggingError> {
        let raw = format ?? ProcessInfo.processInfo.environment["SR_LOG_FORMAT"] ?? "text"
        guard let parsed = LogFormat(rawValue: raw.lowercased()) else {
            return .failure(LoggingError("log format '\(raw)' is not text or json"))
        }
        return .success(parsed)
    }

    /// Bootstraps swift-log once per process (executables only), to stdout: text lines with
    /// metadata as key=value, or one JSON object per line; an invalid level or format falls
    /// back to info / text (validate them first with `logLevel` / `logFormat`).
    public static func bootstrapLogging(level: String?, format: String? = nil) {
        let parsedLevel = (try? logLevel(level).get()) ?? .info
        let parsedFormat = (try? logFormat(format).get()) ?? .text
        LoggingSystem.bootstrap { label in
            switch parsedFormat {
            case .text:
                var handler = StreamLogHandler.standardOutput(label: label)
                handler.logLevel = parsedLevel
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = parsedLevel
                return handler
            }
        }
    }
}

/// An invalid `--log-level` or `--log-format` (or $SR_LOG_LEVEL / $SR_LOG_FORMAT).
public struct LoggingError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
