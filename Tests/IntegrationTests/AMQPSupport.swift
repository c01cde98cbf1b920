// Helpers of the AMQP integration tests: the broker URL, scratch names, a transport per test,
// bounded waits, and whether pika is installed for the interoperability test.
import Foundation
import Logging
import SRAMQP
import SRTransport
import Synchronization
import Testing
import TransportConformance
#if canImport(Glibc)
import Glibc
#endif

/// Helpers for the AMQP tests.
enum AMQPSupport {
    static let logger = Logger(label: "sr.test.amqp")

    static let hasPika: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import pika"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    static func url() throws -> String {
        try #require(BrokerEnvironment.url, "SR_AMQP_URL is not set")
    }

    static func connect() async throws -> AMQPTransport {
        try await AMQPTransport.connect(url(), logger: logger)
    }

    /// Runs `body` with a new transport and closes it afterwards, also when `body` throws.
    static func withTransport<T>(_ body: (AMQPTransport) async throws -> T) async throws -> T {
        let t = try await connect()
        do {
            let result = try await body(t)
            await t.close()
            return result
        } catch {
            await t.close()
            throw error
        }
    }

    static func name(_ role: String) -> String {
        "sr.test.amqp.\(role).\(String(UInt64.random(in: .min ... .max), radix: 36))"
    }

    /// Non-durable, deleted by the broker a minute after its last use.
    static func scratchQueue(_ role: String, maxPriority: UInt8? = nil, deadLetterExchange: String? = nil) -> QueueSpec {
        QueueSpec(name: name(role), durable: false, maxPriority: maxPriority, expires: .seconds(60),
                  deadLetterExchange: deadLetterExchange)
    }

    /// Hands out message numbers until stopped.
    final class Counter: Sendable {
        private let state = Mutex<(next: Int, stopAt: Int)>((0, .max))
        func take() -> Int? {
            state.withLock { s in
                guard s.next < s.stopAt else { return nil }
                defer { s.next += 1 }
                return s.next
            }
        }
        func stop(after more: Int) { state.withLock { $0.stopAt = $0.next + more } }
        var total: Int { state.withLock { $0.next } }
    }

    struct Timeout: Error, CustomStringConvertible {
        let description: String
    }

    static func withTimeout<T: Sendable>(_ limit: Duration, _ what: String,
                                         _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            guard let value = first else { throw Timeout(description: "not within \(limit): \(what)") }
            return value
        }
    }

    /// The next `count` deliveries (acked unless `ack` is false), within a bound.
    static func take(_ count: Int, from sub: Subscription, within limit: Duration = .seconds(10),
                     ack: Bool = true) async throws -> [Delivery] {
        try await withTimeout(limit, "\(count) deliveries") {
            var out: [Delivery] = []
            for try await d in sub.deliveries {
                out.append(d)
                if ack { try await sub.ack(d) }
                if out.count == count { break }
            }
            guard out.count == count else { throw Timeout(description: "the deliveries ended after \(out.count) of \(count)") }
            return out
        }
    }

    /// A port on 127.0.0.1 that nothing listens on (bound, then released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts")

    static func rabbitmqctl(_ dir: String, _ args: [String]) async throws -> (Int32, String) {
        try await run("/bin/bash", [scripts.appendingPathComponent("rabbitmqctl.sh").path, dir] + args)
    }

    /// Runs a program to completion (bounded), returning its status and combined output.
    static func run(_ path: String, _ args: [String], timeout: Duration = .seconds(60)) async throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        let (exited, signal) = AsyncStream<Void>.makeStream()
        p.terminationHandler = { _ in
            signal.yield()
            signal.finish()
        }
        try p.run()
        let reader = Task.detached { pipe.fileHandleForReading.readDataToEndOfFile() }
        do {
            _ = try await withTimeout(timeout, "\(path) \(args.joined(separator: " "))") {
                for await _ in exited { break }
                return true
            }
        } catch {
            p.terminate()
            throw error
        }
        p.waitUntilExit()
        let output = String(decoding: await reader.value, as: UTF8.self)
        return (p.terminationStatus, output)
    }
}
