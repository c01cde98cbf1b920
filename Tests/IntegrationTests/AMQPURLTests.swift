// AMQPURL parsing: no broker needed.
import Testing
import SRAMQP
import SRTransport

@Suite struct AMQPURLTests {
    @Test func fullURL() throws {
        let u = try AMQPURL("amqp://alice:s%40cret%3A1@rabbit.example:5673/prod%2Fjobs?heartbeat=10&connection_timeout=250")
        #expect(!u.useTLS)
        #expect(u.user == "alice")
        #expect(u.password == "s@cret:1")
        #expect(u.host == "rabbit.example")
        #expect(u.port == 5673)
        #expect(u.vhost == "prod/jobs")
        #expect(u.heartbeat == .seconds(10))
        #expect(u.connectionTimeout == .milliseconds(250))
    }

    @Test(arguments: ["amqp://h", "amqp://h/", "amqp://h/%2f", "amqp://h/%2F", "amqp://guest:guest@h:5672/%2F"])
    func defaultVhostIsSlash(_ text: String) throws {
        let u = try AMQPURL(text)
        #expect(u.vhost == "/")
        #expect(u.port == 5672)
        #expect(u.user == "guest" && u.password == "guest")
        #expect(u.heartbeat == .seconds(30))
    }

    @Test func defaultsForTLS() throws {
        let u = try AMQPURL("amqps://u:p@h")
        #expect(u.useTLS)
        #expect(u.port == 5671)
        #expect(u.host == "h")
    }

    @Test func ipv6Host() throws {
        let u = try AMQPURL("amqp://u:p@[::1]:1234/v")
        #expect(u.host == "::1")
        #expect(u.port == 1234)
        #expect(u.description == "amqp://u:***@[::1]:1234/v")
    }

    @Test func descriptionHidesThePassword() throws {
        let u = try AMQPURL("amqp://user:hunter2@127.0.0.1:5672/")
        #expect(u.description == "amqp://user:***@127.0.0.1:5672/")
        #expect(!"\(u)".contains("hunter2"))
        let v = try AMQPURL("amqps://us%20er:hunter2@h:1/my%2Fvhost")
        #expect(v.description == "amqps://us%20er:***@h:1/my%2Fvhost")
    }

    @Test func tlsFilesFromEnvironmentOrQuery() throws {
        let env = ["SR_AMQP_CACERT": "/env/ca.pem", "SR_AMQP_CLIENT_CERT": "/env/c.pem", "SR_AMQP_CLIENT_KEY": "/env/c.key"]
        let a = try AMQPURL("amqps://h/", environment: env)
        #expect(a.caCertificateFile == "/env/ca.pem")
        #expect(a.certificateFile == "/env/c.pem")
        #expect(a.keyFile == "/env/c.key")
        let b = try AMQPURL("amqps://h/?cacertfile=%2Fq%2Fca.pem", environment: env.merging(["SR_AMQP_CERT": "/e/cert", "SR_AMQP_KEY": "/e/key"]) { $1 })
        #expect(b.caCertificateFile == "/q/ca.pem")
        #expect(b.certificateFile == "/e/cert")
        #expect(b.keyFile == "/e/key")
        // Plain amqp ignores the TLS variables (the start script exports both URLs).
        let c = try AMQPURL("amqp://h/", environment: env)
        #expect(c.caCertificateFile == nil && c.certificateFile == nil)
    }

    @Test(arguments: [
        ("http://h/", "unsupported scheme"),
        ("h:5672", "no scheme"),
        ("amqp://u:p@h:99999/", "port '99999'"),
        ("amqp://u:p@h:abc/", "port 'abc'"),
        ("amqp://u:p@h/a/b", "percent-encode '/'"),
        ("amqp://u:p@h/%zz", "percent-encoding in the vhost"),
        ("amqp://u:p@h/?heartbeat=-1", "heartbeat"),
        ("amqp://u:p@h/?frame_max=1", "unknown query parameter 'frame_max'"),
        ("amqp://u:p@h/?cacertfile=x", "need TLS"),
        ("amqps://u:p@h/?certfile=x", "no key"),
    ])
    func invalidURLs(_ text: String, _ expected: String) throws {
        let error = #expect(throws: TransportError.self) { try AMQPURL(text) }
        #expect(error?.code == .invalidURL)
        #expect(error?.message.contains(expected) == true, "\(String(describing: error?.message))")
    }

    @Test func invalidURLMessageHidesThePassword() throws {
        let error = #expect(throws: TransportError.self) { try AMQPURL("amqp://u:topsecret@h:notaport/") }
        #expect(error?.message.contains("topsecret") == false)
        #expect(error?.message.contains("u:***@h") == true, "\(String(describing: error?.message))")
    }
}
