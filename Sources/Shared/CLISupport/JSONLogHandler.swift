// `--log-format json`: one JSON object per line for log shippers (Loki, Elasticsearch, jq) — the
// same events as the text format, with the time, level, label and message beside the metadata.
import Foundation
import Logging
import SRCore
import Synchronization

public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let write: @Sendable (String) -> Void

    /// `write` receives each line without its newline (default: stdout, one write per line so
    /// that lines of concurrent tasks never interleave).
    public init(label: String, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardOutput) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let extra = event.metadata { fields.merge(extra) { $1 } }
        var line = "{\"ts\":\(JSONText.quoted(Self.timestamp()))"
        line += ",\"level\":\(JSONText.quoted(event.level.rawValue)),\"label\":\(JSONText.quoted(label))"
        line += ",\"message\":\(JSONText.quoted(event.message.description))"
        // Metadata after the fixed fields, sorted so that lines diff well; a key that would
        // shadow a fixed field keeps its value under "meta.<key>".
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            let name = ["ts", "level", "label", "message"].contains(key) ? "meta.\(key)" : key
            line += ",\(JSONText.quoted(name)):\(Self.json(value))"
        }
        write(line + "}")
    }

    static func json(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): JSONText.quoted(s)
        case .stringConvertible(let c): JSONText.quoted(c.description)
        case .array(let a): "[" + a.map(json).joined(separator: ",") + "]"
        case .dictionary(let d): "{" + d.sorted { $0.key < $1.key }.map { JSONText.quoted($0.key) + ":" + json($0.value) }.joined(separator: ",") + "}"
        }
    }

    /// UTC, millisecond precision, ISO 8601 (what log shippers parse without configuration).
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tm = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &tm)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec, Int(ts.tv_nsec / 1_000_000))
    }

    private static let stdoutLock = Mutex(())

    @Sendable public static func standardOutput(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        stdoutLock.withLock { _ in
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = Glibc.write(1, raw.baseAddress! + offset, raw.count - offset)
                    if n <= 0 { if errno == EINTR { continue }; return }
                    offset += n
                }
            }
        }
    }
}
