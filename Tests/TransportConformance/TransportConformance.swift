// The behavioural contract of a Transport, as cases any implementation can be run against:
// the unit tests run them on the in-memory broker, the integration tests on AMQP + RabbitMQ.
import SRTransport

public enum TransportConformance {
    /// Every case; each opens its own transports and names, and cleans up after itself.
    public static let cases: [ConformanceCase] =
        RoutingCases.all + DeclarationCases.all + DeliveryCases.all + RedeliveryCases.all + DeadLetterCases.all
}

/// One behavioural check, run against transports made by a factory.
public struct ConformanceCase: Sendable, CustomStringConvertible {
    public let name: String
    public let run: @Sendable (TransportFactory) async throws -> Void

    public init(name: String, run: @escaping @Sendable (TransportFactory) async throws -> Void) {
        self.name = name
        self.run = run
    }

    /// A case whose body works in a Harness; `slug` goes into its queue and exchange names.
    init(_ slug: String, _ name: String, _ body: @escaping @Sendable (Harness) async throws -> Void) {
        self.init(name: name) { factory in try await Harness.run(factory: factory, slug: slug, body) }
    }

    public var description: String { name }
}

/// Makes connections to the transport under test.
public struct TransportFactory: Sendable {
    /// Opens a new connection (another client of the same broker).
    public let make: @Sendable () async throws -> any Transport
    /// Starts every queue and exchange name, so concurrent runs against one real broker do
    /// not collide (a random part is added per name as well).
    public let prefix: String

    public init(prefix: String, make: @escaping @Sendable () async throws -> any Transport) {
        self.prefix = prefix
        self.make = make
    }
}

/// A failed check: what was expected, and where.
public struct ConformanceFailure: Error, CustomStringConvertible {
    public let message: String
    public let file: StaticString
    public let line: UInt

    public init(_ message: String, file: StaticString = #fileID, line: UInt = #line) {
        self.message = message
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line): \(message)" }
}

/// Throws a ConformanceFailure with `message` unless `condition` holds.
public func check(_ condition: Bool, _ message: @autoclosure () -> String,
                  file: StaticString = #fileID, line: UInt = #line) throws {
    if !condition { throw ConformanceFailure(message(), file: file, line: line) }
}
