// The smallest HTTP/1.1 responder Prometheus can scrape: GET /metrics on a thread of its own,
// one connection at a time, every request bounded in bytes and time. Anything else gets a short
// error status; nothing a client sends can crash or stall the role beyond the timeout.
import Foundation
import Synchronization

/// Serves `body()` at `GET /metrics` (and `HEAD`) on `host:port` until `stop()`.
///
/// Bounded: a request head larger than `maxRequestBytes` gets 431, one that is not complete
/// within `timeout` is dropped (408 when something came), a malformed request line gets 400, a
/// method other than GET/HEAD 405, any other path 404; every response closes the connection.
/// One connection is served at a time (a scrape takes microseconds; a silent client holds the
/// thread for at most `timeout`, plus half a second of lingering after an answer). Writes never
/// raise SIGPIPE.
public final class MetricsEndpoint: Sendable {
    public struct Configuration: Sendable {
        /// An IPv4 or IPv6 address literal (default 127.0.0.1: this machine only).
        public var host: String = "127.0.0.1"
        /// 0: any free port (read the chosen one from `port`).
        public var port: Int = 0
        /// The most a request head may take, in bytes (default 8 KiB).
        public var maxRequestBytes: Int = 8 << 10
        /// How long a client may take to send its request, and to take the response (default 2 s).
        public var timeout: Duration = .seconds(2)
        /// The one path served (default /metrics).
        public var path: String = "/metrics"
        public init(host: String = "127.0.0.1", port: Int = 0) {
            self.host = host
            self.port = port
        }
    }

    /// The port bound (the chosen one when the configuration said 0).
    public let port: Int
    public let configuration: Configuration
    private let listener: Int32
    private let stopped = StopFlag()
    private let finished = DispatchSemaphore(value: 0)

    /// Shared with the serving thread (a Mutex itself cannot be captured: it is not copyable).
    private final class StopFlag: Sendable {
        let value = Mutex(false)
    }

    /// Binds and starts serving; throws, naming the address and what to do, when it cannot bind.
    public init(_ configuration: Configuration, body: @escaping @Sendable () -> [UInt8]) throws(MetricsEndpointError) {
        self.configuration = configuration
        let (fd, bound) = try Self.listen(configuration)
        listener = fd
        port = bound
        let stopped = self.stopped, finished = self.finished
        let thread = Thread {
            defer { finished.signal() }
            while true {
                let client = accept(fd, nil, nil)
                if stopped.value.withLock({ $0 }) {
                    if client >= 0 { close(client) }
                    return
                }
                guard client >= 0 else {
                    if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE { continue }
                    return
                }
                Self.serve(client, configuration, body)
                close(client)
            }
        }
        thread.name = "sr.metrics"
        thread.start()
    }

    deinit { stop() }

    /// Stops accepting and waits for the serving thread to end (idempotent).
    public func stop() {
        let first = stopped.value.withLock { s -> Bool in defer { s = true }; return !s }
        guard first else { return }
        // Wakes the blocked accept (Linux returns EINVAL), then the thread sees `stopped`.
        shutdown(listener, Int32(SHUT_RDWR))
        finished.wait()
        close(listener)
    }

    // MARK: Binding

    static func listen(_ c: Configuration) throws(MetricsEndpointError) -> (Int32, Int) {
        guard (0...65_535).contains(c.port) else { throw MetricsEndpointError("port \(c.port) is not in 0...65535") }
        var v4 = sockaddr_in(), v6 = sockaddr_in6()
        let family: Int32
        if inet_pton(AF_INET, c.host, &v4.sin_addr) == 1 {
            family = AF_INET
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(c.port)).bigEndian
        } else if inet_pton(AF_INET6, c.host, &v6.sin6_addr) == 1 {
            family = AF_INET6
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(c.port)).bigEndian
        } else {
            throw MetricsEndpointError("'\(c.host)' is not an IP address; give one such as 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
        }
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MetricsEndpointError("cannot open a socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = family == AF_INET
            ? withUnsafePointer(to: &v4) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            : withUnsafePointer(to: &v6) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        guard rc == 0, Glibc.listen(fd, 16) == 0 else {
            let code = errno
            close(fd)
            let why = code == EADDRINUSE ? "it is in use (another role on this machine?); choose another --metrics-port"
                : code == EACCES ? "permission denied (ports below 1024 need privileges); choose a port above 1024"
                : code == EADDRNOTAVAIL ? "the address is not one of this machine's; use 127.0.0.1 or 0.0.0.0"
                : String(cString: strerror(code))
            throw MetricsEndpointError("cannot serve metrics on \(c.host):\(c.port): \(why)")
        }
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = withUnsafePointer(to: &address) { p -> Int in
            family == AF_INET
                ? p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
                : p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
        }
        return (fd, port)
    }

    // MARK: One connection

    /// Reads one request head (bounded), answers it, returns (the caller closes).
    static func serve(_ fd: Int32, _ c: Configuration, _ body: @Sendable () -> [UInt8]) {
        var timeout = timeval(tv_sec: Int(c.timeout.components.seconds), tv_usec: Int(c.timeout.components.attoseconds / 1_000_000_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let head = readHead(fd, limit: c.maxRequestBytes, timeout: c.timeout)
        let response: [UInt8]
        switch head {
        case .complete(let bytes): response = respond(to: bytes, path: c.path, body: body)
        case .tooLarge: response = status(431, "Request Header Fields Too Large", "request head larger than \(c.maxRequestBytes) bytes\n")
        case .incomplete(let got): guard got > 0 else { return }; response = status(408, "Request Timeout", "incomplete request\n")
        }
        send(fd, response)
        linger(fd, limit: 8 * c.maxRequestBytes)
    }

    /// Closing with unread bytes makes the kernel send a reset, which can destroy the response
    /// before the client reads it (RFC 9112 §9.6): so half-close, then read and discard what the
    /// client still sends, bounded in bytes and to half a second.
    static func linger(_ fd: Int32, limit: Int) {
        shutdown(fd, Int32(SHUT_WR))
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(500)
        var discarded = 0
        var chunk = [UInt8](repeating: 0, count: 4096)
        while discarded < limit {
            let (seconds, attoseconds) = clock.now.duration(to: deadline).components
            guard seconds > 0 || (seconds == 0 && attoseconds > 0) else { return }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { return }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            discarded += n
        }
    }

    enum Head: Equatable {
        case complete([UInt8])
        case tooLarge
        /// Closed or timed out after this many bytes.
        case incomplete(Int)
    }

    /// Bytes up to the blank line that ends a request head, within `limit` bytes and `timeout`.
    static func readHead(_ fd: Int32, limit: Int, timeout: Duration) -> Head {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while true {
            if let end = headEnd(buffer) { return .complete(Array(buffer[..<end])) }
            if buffer.count >= limit { return .tooLarge }
            let left = clock.now.duration(to: deadline)
            guard left > .zero else { return .incomplete(buffer.count) }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let (seconds, attoseconds) = left.components
            let ms = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            let ready = poll(&poller, 1, ms)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { return .incomplete(buffer.count) }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, limit - buffer.count), 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return .incomplete(buffer.count) }
            buffer += chunk[..<n]
        }
    }

    /// The index just past "\r\n\r\n" (or "\n\n", which some clients send), if there.
    static func headEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 2 else { return nil }
        for i in 1..<b.count where b[i] == 0x0A {
            if b[i - 1] == 0x0A { return i + 1 }
            if i >= 3, b[i - 1] == 0x0D, b[i - 2] == 0x0A, b[i - 3] == 0x0D { return i + 1 }
        }
        return nil
    }

    /// The response to a complete request head.
    static func respond(to head: [UInt8], path: String, body: () -> [UInt8]) -> [UInt8] {
        let lineEnd = head.firstIndex(of: 0x0A) ?? head.count
        var line = head[..<lineEnd]
        if line.last == 0x0D { line = line.dropLast() }
        let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { (0x21...0x7E).contains($0) } }),
              parts[2].starts(with: Array("HTTP/1.".utf8)) else {
            return status(400, "Bad Request", "expected a request line such as: GET \(path) HTTP/1.1\n")
        }
        let method = String(decoding: parts[0], as: UTF8.self), target = parts[1]
        let targetPath = String(decoding: target.prefix { $0 != UInt8(ascii: "?") }, as: UTF8.self)
        guard targetPath == path else { return status(404, "Not Found", "only \(path) is served here\n") }
        guard method == "GET" || method == "HEAD" else {
            return status(405, "Method Not Allowed", "use GET\n", extra: "Allow: GET, HEAD\r\n")
        }
        let content = body()
        let header = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            + "Content-Length: \(content.count)\r\nConnection: close\r\n\r\n"
        return Array(header.utf8) + (method == "HEAD" ? [] : content)
    }

    static func status(_ code: Int, _ reason: String, _ text: String, extra: String = "") -> [UInt8] {
        Array(("HTTP/1.1 \(code) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(text.utf8.count)\r\n"
               + extra + "Connection: close\r\n\r\n" + text).utf8)
    }

    /// Writes all of `bytes` unless the peer goes away or stops reading (SO_SNDTIMEO); never SIGPIPE.
    static func send(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }
                offset += n
            }
        }
    }
}

/// The metrics endpoint could not start; the message names the address and what to do.
public struct MetricsEndpointError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
