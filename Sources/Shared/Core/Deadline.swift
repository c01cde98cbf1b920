// When a job's answer is due. A deadline crosses machines (producer, consumers, aggregator), so
// it is absolute: wall-clock milliseconds since the Unix epoch, the one form it takes from the
// moment a job is planned until its answer (the `sr-deadline-ms` header and `deadlineMs` in the
// open record carry exactly this number). Relative forms exist only at the edges: the user's
// `--deadline 500ms` on the way in, a broker TTL and `late_ms` on the way out.

public struct Deadline: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// Milliseconds since the Unix epoch.
    public var epochMs: Int64

    public init(epochMs: Int64) {
        self.epochMs = epochMs
    }

    /// `relative` after `nowMs`, and at least 1 ms after it: a deadline of zero would be past
    /// before the first task could be read.
    public init(after relative: Duration, from nowMs: Int64) {
        epochMs = nowMs &+ max(1, relative.wholeMilliseconds)
    }

    /// Milliseconds left at `nowMs`; zero or negative once the deadline is reached.
    @inlinable public func remainingMs(at nowMs: Int64) -> Int64 { epochMs &- nowMs }

    /// Milliseconds past the deadline at `nowMs` (an output's `late_ms`); negative: time to spare.
    @inlinable public func lateMs(at nowMs: Int64) -> Int64 { nowMs &- epochMs }

    /// True once `nowMs` is after the deadline.
    @inlinable public func hasPassed(at nowMs: Int64) -> Bool { nowMs > epochMs }

    public static func < (a: Deadline, b: Deadline) -> Bool { a.epochMs < b.epochMs }

    /// Encoded as the bare number, so JSON carries `"deadlineMs": 1765…` as it always has.
    public init(from decoder: any Decoder) throws {
        epochMs = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(epochMs)
    }

    public var description: String { "\(epochMs) ms since the epoch" }
}
