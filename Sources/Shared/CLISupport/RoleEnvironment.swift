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

extension RoleEnvironment {
    /// Where `--metrics-port` / `--metrics-host` (else $SR_METRICS_PORT / $SR_METRICS_HOST) serve
    /// metrics: nil when off (no port, or 0); a failure names what is wrong.
    public static func metricsEndpoint(port: Int?, host: String?) -> Result<MetricsEndpoint.Configuration?, MetricsSettingError> {
        let environment = ProcessInfo.processInfo.environment
        var resolvedPort = port
        if resolvedPort == nil, let raw = environment["SR_METRICS_PORT"], !raw.isEmpty {
            guard let parsed = Int(raw) else {
                return .failure(MetricsSettingError("SR_METRICS_PORT '\(raw)' is not a port number (1...65535, or 0 for off)"))
            }
            resolvedPort = parsed
        }
        guard let p = resolvedPort, p != 0 else { return .success(nil) }
        guard (1...65_535).contains(p) else {
            return .failure(MetricsSettingError("metrics port \(p) is not in 1...65535 (0 turns metrics off)"))
        }
        let address = host ?? environment["SR_METRICS_HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        var v4 = in_addr(), v6 = in6_addr()
        guard inet_pton(AF_INET, address, &v4) == 1 || inet_pton(AF_INET6, address, &v6) == 1 else {
            return .failure(MetricsSettingError("metrics host '\(address)' is not an IP address; use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"))
        }
        return .success(MetricsEndpoint.Configuration(host: address, port: p))
    }
}

/// An invalid `--metrics-port` or `--metrics-host` (or $SR_METRICS_PORT / $SR_METRICS_HOST).
public struct MetricsSettingError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// An invalid `--log-level` or `--log-format` (or $SR_LOG_LEVEL / $SR_LOG_FORMAT).
public struct LoggingError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
