// The one error type of the layering math: bad partitions, values out of range, schedules
// that do not cover every chunk pair, products that would not be exact.

/// An error from partitioning, scheduling or accumulating. `description` says what is wrong
/// and what to do about it.
public struct LayeringError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of problem this is; stable for programs to match on.
    public enum Code: String, Sendable, Equatable {
        case invalidPartition
        case valueOutOfRange
        case nonFiniteValue
        case chunkTooWide
        case invalidSchedule
        case shapeMismatch
        case notExact
        case duplicateMiniJob
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
