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

    /// Bootstraps swift-log once per process (executables only): text lines to stdout with
    /// metadata as key=value, level from `level` or $SR_LOG_LEVEL (default info).
    public static func bootstrapLogging(level: String?) {
        let raw = level ?? ProcessInfo.processInfo.environment["SR_LOG_LEVEL"] ?? "info"
        let parsed = Logger.Level(rawValue: raw.lowercased()) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardOutput(label: label)
            handler.logLevel = parsed
            return handler
        }
    }
}
