// Why a message could not be decoded: becomes the `sr-dead-reason` header in sr.dead.

public struct WireError: Error, Sendable, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
