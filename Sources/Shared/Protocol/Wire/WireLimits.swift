// Upper bounds every decoder checks before it multiplies or allocates: a malformed or hostile
// message must be refused (and dead-lettered), never crash a role or exhaust its memory.
import SRCore
import Foundation

public enum WireLimits {
    /// Rows, columns or vectors of a job.
    public static let maxDimension = ShapeLimits.maxDimension
    /// Elements of a job's result (rows × vectors) and of a task's vector block (vectors × columns).
    public static let maxElements = ShapeLimits.maxElements
    /// Longest task id: ids travel as AMQP `message_id` (a short string, ≤ 255 bytes) with a
    /// job-id prefix added by inference partials.
    public static let maxTaskIDLength = 160
    /// Largest message the broker accepts: RabbitMQ 3.x's default `max_message_size` (128 MiB),
    /// or `SR_MAX_MESSAGE_BYTES` (1 MiB … 512 MiB; RabbitMQ 4.x defaults to 16 MiB — set it to
    /// your broker's value; AMQP does not tell clients). A job whose answer or task could not be
    /// published is refused when it is planned or opened (with a `failed` output), never
    /// retried forever.
    public static let maxMessageBytes: Int = messageBytes(from: ProcessInfo.processInfo.environment["SR_MAX_MESSAGE_BYTES"])

    static let defaultMessageBytes = 128 << 20

    /// The configured limit; a value that is not an integer in 1 MiB … 512 MiB is reported
    /// once on standard error and the default is used.
    static func messageBytes(from text: String?) -> Int {
        guard let text else { return defaultMessageBytes }
        guard let n = Int(text), (1 << 20)...(512 << 20) ~= n else {
            FileHandle.standardError.write(Data("warning: SR_MAX_MESSAGE_BYTES='\(text.prefix(40))' is not an integer in 1048576…536870912 (bytes); using \(defaultMessageBytes)\n".utf8))
            return defaultMessageBytes
        }
        return n
    }
    /// Room left in a message for headers and framing.
    public static let messageHeadroom = 64 << 10
    /// Longest `sr-reason` carried on a failed output.
    public static let maxReasonLength = 1000
    /// Chunks per operand.
    public static let maxChunks = ShapeLimits.maxChunks
    /// Largest relative deadline: one day.
    public static let maxRelativeDeadlineMs: Int64 = 86_400_000
    /// Creation times must lie in 2001…2286 (ms since the epoch): rejects absurd clocks.
    public static let creationRange: ClosedRange<Int64> = 1_000_000_000_000...10_000_000_000_000

    /// a · b, or a `WireError` when it overflows or exceeds `limit`.
    static func product(_ a: Int, _ b: Int, limit: Int = maxElements, _ what: String) throws(WireError) -> Int {
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow, p >= 0, p <= limit else {
            throw WireError("\(what) (\(a) × \(b)) exceeds the limit of \(limit)")
        }
        return p
    }
}
