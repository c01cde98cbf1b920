// The /metrics responder against what a client may send — a scrape, another path or method,
// garbage, an endless head, silence — and the scraper that `srproduce top` uses against it.
// Real sockets on 127.0.0.1, each test on a port the kernel picks; no sleeps.
import Foundation
import Testing
@testable import SRCLISupport

@Suite struct MetricsEndpointTests {
    static let body = Array("# TYPE sr_tasks_computed_total counter\nsr_tasks_computed_total{kind=\"matvec\",layer=\"0\"} 3\n".utf8)

    func endpoint(timeout: Duration = .seconds(5), maxRequestBytes: Int = 8 << 10) throws -> MetricsEndpoint {
        var c = MetricsEndpoint.Configuration(host: "127.0.0.1", port: 0)
        c.timeout = timeout
        c.maxRequestBytes = maxRequestBytes
        return try MetricsEndpoint(c) { Self.body }
    }

    /// Connects, sends `bytes` (optionally closing the write side), reads the whole answer (the
    /// endpoint closes after one), bounded by 30 s.
    static func exchange(port: Int, _ bytes: [UInt8], closeWrite: Bool = false) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(rc == 0, "connect: \(String(cString: strerror(errno)))")
        if !bytes.isEmpty { MetricsEndpoint.send(fd, bytes) }
        if closeWrite { shutdown(fd, Int32(SHUT_WR)) }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            answer += chunk[..<n]
        }
        return String(decoding: answer, as: UTF8.self)
    }

    @Test func aScrapeGetsTheBodyInTheTextFormat() throws {
        let e = try endpoint()
        defer { e.stop() }
        let answer = try Self.exchange(port: e.port, Array("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n".utf8))
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
        #expect(answer.contains("Content-Type: text/plain; version=0.0.4"))
        #expect(answer.contains("Content-Length: \(Self.body.count)\r\n"))
        #expect(answer.hasSuffix("\r\n\r\n" + String(decoding: Self.body, as: UTF8.self)))
        // A query string is the same path; HEAD has the headers only.
        #expect(try Self.exchange(port: e.port, Array("GET /metrics?x=1 HTTP/1.0\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 200"))
        let head = try Self.exchange(port: e.port, Array("HEAD /metrics HTTP/1.1\r\n\r\n".utf8))
        #expect(head.hasPrefix("HTTP/1.1 200") && head.hasSuffix("\r\n\r\n"), "\(head)")
    }

    @Test func otherPathsAndMethodsAreRefused() throws {
        let e = try endpoint()
        defer { e.stop() }
        #expect(try Self.exchange(port: e.port, Array("GET / HTTP/1.1\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 404 Not Found"))
        #expect(try Self.exchange(port: e.port, Array("GET /metricsx HTTP/1.1\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 404"))
        let post = try Self.exchange(port: e.port, Array("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n".utf8))
        #expect(post.hasPrefix("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"), "\(post)")
    }

    @Test(arguments: [
        "\u{0}\u{1}\u{2}garbage\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics SPDY/3\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\n\r\n", "\r\n\r\n", "GET /met\u{7F}rics HTTP/1.1\r\n\r\n",
    ])
    func garbageGetsBadRequest(_ request: String) throws {
        let e = try endpoint()
        defer { e.stop() }
        let answer = try Self.exchange(port: e.port, Array(request.utf8))
        #expect(answer.hasPrefix("HTTP/1.1 400 Bad Request"), "\(request.debugDescription): \(answer)")
    }

    @Test func anEndlessHeadIsCutOffAndTheEndpointServesOn() throws {
        let e = try endpoint(maxRequestBytes: 1024)
        defer { e.stop() }
        let flood = Array("GET /metrics HTTP/1.1\r\n".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 64 << 10)
        let answer = try Self.exchange(port: e.port, flood)
        #expect(answer.hasPrefix("HTTP/1.1 431"), "\(answer.prefix(200))")
        // Random bytes with no line end at all, then a client that hangs up half-way.
        var g = SystemRandomNumberGenerator()
        _ = try Self.exchange(port: e.port, (0..<4096).map { _ in UInt8.random(in: 0...255, using: &g) })
        _ = try Self.exchange(port: e.port, Array("GET /metr".utf8), closeWrite: true)
        #expect(try Self.exchange(port: e.port, Array("GET /metrics HTTP/1.1\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 200"))
    }

    @Test func aSilentClientIsDroppedAfterTheTimeoutAndOthersAreServed() throws {
        let e = try endpoint(timeout: .milliseconds(200))
        defer { e.stop() }
        // Says nothing: the endpoint gives up on it (no answer) and goes on serving.
        #expect(try Self.exchange(port: e.port, []) == "")
        let partial = try Self.exchange(port: e.port, Array("GET /metrics HTTP/1.1\r\n".utf8))
        #expect(partial.hasPrefix("HTTP/1.1 408"), "\(partial)")
        #expect(try Self.exchange(port: e.port, Array("GET /metrics HTTP/1.1\r\n\r\n".utf8)).hasPrefix("HTTP/1.1 200"))
    }

    @Test func theScraperReadsTheEndpoint() throws {
        let e = try endpoint()
        defer { e.stop() }
        let ok = try MetricsScrape.get(try MetricsScrape.Address.parse("http://127.0.0.1:\(e.port)/metrics"))
        #expect(ok.status == 200 && ok.body == String(decoding: Self.body, as: UTF8.self))
        let missing = try MetricsScrape.get(try MetricsScrape.Address.parse("http://localhost:\(e.port)/other"))
        #expect(missing.status == 404)
    }

    @Test func aStoppedEndpointFreesItsPortAndTheScraperSaysSo() throws {
        let e = try endpoint()
        let port = e.port
        e.stop()
        e.stop()   // idempotent
        #expect(throws: MetricsScrapeError.self) { try MetricsScrape.get(try MetricsScrape.Address.parse("http://127.0.0.1:\(port)/metrics")) }
        // The same port can be bound again at once (SO_REUSEADDR).
        let again = try MetricsEndpoint(MetricsEndpoint.Configuration(host: "127.0.0.1", port: port)) { [] }
        again.stop()
    }

    @Test func bindingProblemsAreExplained() throws {
        let e = try endpoint()
        defer { e.stop() }
        #expect { _ = try MetricsEndpoint(MetricsEndpoint.Configuration(host: "127.0.0.1", port: e.port)) { [] } } throws: { error in
            "\(error)".contains("in use") && "\(error)".contains("--metrics-port")
        }
        #expect { _ = try MetricsEndpoint(MetricsEndpoint.Configuration(host: "localhost", port: 0)) { [] } } throws: { error in
            "\(error)".contains("not an IP address")
        }
    }

    @Test func addressesAreParsedOrRefusedWithAReason() throws {
        #expect(try MetricsScrape.Address.parse("http://127.0.0.1:9464/metrics") == .init(host: "127.0.0.1", port: 9464, path: "/metrics"))
        #expect(try MetricsScrape.Address.parse("http://consumer:9465") == .init(host: "consumer", port: 9465, path: "/"))
        #expect(try MetricsScrape.Address.parse("http://[::1]:9464/metrics") == .init(host: "::1", port: 9464, path: "/metrics"))
        for (bad, reason) in [("https://x:1/m", "not an http://"), ("http://x:0/m", "1...65535"), ("http://x:abc/", "1...65535"),
                              ("http://:80/", "no valid host"), ("http://a b:1/", "no valid host")] {
            #expect { try MetricsScrape.Address.parse(bad) } throws: { "\($0)".contains(reason) }
        }
    }

    @Test func theRolesFlagsAreCheckedAtTheEdge() throws {
        #expect(try RoleEnvironment.metricsEndpoint(port: nil, host: nil).get() == nil || ProcessInfo.processInfo.environment["SR_METRICS_PORT"] != nil)
        #expect(try RoleEnvironment.metricsEndpoint(port: 0, host: nil).get() == nil)
        #expect(try RoleEnvironment.metricsEndpoint(port: 9464, host: nil).get()?.port == 9464)
        #expect(try RoleEnvironment.metricsEndpoint(port: 9464, host: "0.0.0.0").get()?.host == "0.0.0.0")
        for (port, host, reason) in [(70_000, nil, "not in 1...65535"), (-1, nil, "not in 1...65535"), (9464, "example.org", "not an IP address")] as [(Int, String?, String)] {
            guard case .failure(let e) = RoleEnvironment.metricsEndpoint(port: port, host: host) else {
                Issue.record("\(port) \(host ?? "") accepted")
                continue
            }
            #expect(e.description.contains(reason), "\(e)")
        }
    }
}
