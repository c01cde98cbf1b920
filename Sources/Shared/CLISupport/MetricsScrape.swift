// Reads a Prometheus endpoint once (`srproduce top --metrics URL`, the integration tests): a plain
// HTTP/1.1 GET over a socket, bounded in time and bytes. Blocking: call it off the cooperative
// pool (a BlockingWork thread).
import Foundation

public enum MetricsScrape {
    /// An `http://host[:port]/path` address (port 80 when absent).
    public struct Address: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var path: String

        /// Parses `text`; nil names nothing about why — `parse` says it.
        public init?(_ text: String) {
            guard let a = try? Self.parse(text) else { return nil }
            self = a
        }

        init(host: String, port: Int, path: String) {
            self.host = host
            self.port = port
            self.path = path
        }

        public static func parse(_ text: String) throws(MetricsScrapeError) -> Address {
            let example = "e.g. http://127.0.0.1:9464/metrics"
            guard text.hasPrefix("http://") else {
                throw MetricsScrapeError("'\(text)' is not an http:// address (\(example); https is not supported)")
            }
            let rest = text.dropFirst("http://".count)
            let authority = rest.prefix { $0 != "/" }
            let path = rest.dropFirst(authority.count)
            var host = String(authority), port = 80
            if authority.hasPrefix("[") {   // [::1]:9464
                guard let close = authority.firstIndex(of: "]") else { throw MetricsScrapeError("'\(text)': unclosed [ in the host") }
                host = String(authority[authority.index(after: authority.startIndex)..<close])
                let after = authority[authority.index(after: close)...]
                if after.hasPrefix(":") {
                    guard let p = Int(after.dropFirst()), (1...65_535).contains(p) else { throw MetricsScrapeError("'\(text)': the port must be 1...65535") }
                    port = p
                } else if !after.isEmpty {
                    throw MetricsScrapeError("'\(text)' is not an address (\(example))")
                }
            } else if let colon = authority.lastIndex(of: ":") {
                host = String(authority[..<colon])
                guard let p = Int(authority[authority.index(after: colon)...]), (1...65_535).contains(p) else {
                    throw MetricsScrapeError("'\(text)': the port must be 1...65535 (\(example))")
                }
                port = p
            }
            guard !host.isEmpty, host.allSatisfy({ $0.isLetter || $0.isNumber || "-.:".contains($0) }) else {
                throw MetricsScrapeError("'\(text)' has no valid host (\(example))")
            }
            return Address(host: host, port: port, path: path.isEmpty ? "/" : String(path))
        }

        public var description: String {
            "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)"
        }
    }

    /// GETs `address`: the status code and the body (at most `maxBytes`), within `timeout` for
    /// connecting and again for the answer. Throws with the address and the cause.
    public static func get(_ address: Address, timeout: Duration = .seconds(2), maxBytes: Int = 16 << 20) throws(MetricsScrapeError) -> (status: Int, body: String) {
        let fd = try connect(address, timeout: timeout)
        defer { close(fd) }
        let request = Array("GET \(address.path) HTTP/1.1\r\nHost: \(address.host)\r\nAccept: text/plain\r\nConnection: close\r\n\r\n".utf8)
        MetricsEndpoint.send(fd, request)
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while response.count <= maxBytes {
            let (seconds, attoseconds) = clock.now.duration(to: deadline).components
            guard seconds >= 0, seconds > 0 || attoseconds > 0 else {
                throw MetricsScrapeError("\(address): no complete answer within \(timeout)")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw MetricsScrapeError("\(address): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            response += chunk[..<n]
        }
        guard response.count <= maxBytes else { throw MetricsScrapeError("\(address): answer larger than \(maxBytes) bytes") }
        return try parseResponse(response, address)
    }

    /// Status and body of a complete HTTP/1.x response (the connection closed after it).
    static func parseResponse(_ bytes: [UInt8], _ address: Address) throws(MetricsScrapeError) -> (status: Int, body: String) {
        guard let end = MetricsEndpoint.headEnd(bytes) else { throw MetricsScrapeError("\(address): the answer is not HTTP") }
        let head = String(decoding: bytes[..<end], as: UTF8.self)
        let statusLine = head.prefix { $0 != "\r" && $0 != "\n" }.split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
            throw MetricsScrapeError("\(address): the answer is not HTTP")
        }
        if head.lowercased().contains("transfer-encoding: chunked") {
            throw MetricsScrapeError("\(address): chunked answers are not supported")
        }
        return (status, String(decoding: bytes[end...], as: UTF8.self))
    }

    /// A connected socket, trying each address the host resolves to.
    static func connect(_ address: Address, timeout: Duration) throws(MetricsScrapeError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(address.host, String(address.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw MetricsScrapeError("\(address): cannot resolve \(address.host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var timeoutValue = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        var lastError = ECONNREFUSED
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let info = next {
            next = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            guard fd >= 0 else { lastError = errno; continue }
            // On Linux SO_SNDTIMEO bounds connect() too.
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeoutValue, socklen_t(MemoryLayout<timeval>.size))
            if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { return fd }
            lastError = errno
            close(fd)
        }
        let why = lastError == ECONNREFUSED ? "connection refused (is the role running with --metrics-port \(address.port)?)"
            : lastError == EINPROGRESS || lastError == EAGAIN ? "no answer within \(timeout)"
            : String(cString: strerror(lastError))
        throw MetricsScrapeError("\(address): \(why)")
    }
}

/// A scrape failed; the message names the address and the cause.
public struct MetricsScrapeError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
