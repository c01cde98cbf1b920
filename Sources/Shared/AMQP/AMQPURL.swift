// Where and how to reach RabbitMQ: an `amqp[s]://user:pass@host:port/vhost?…` URL parsed into
// typed settings, plus TLS files from the environment. The password never appears in text.
import SRTransport

/// A parsed AMQP URL (the RabbitMQ URI spec, with this project's conventions).
///
/// `amqp[s]://user:password@host:port/vhost?heartbeat=30&connection_timeout=5000&cacertfile=…`
/// - user, password: percent-decoded; default `guest`/`guest` (RabbitMQ lets guest in only
///   from loopback).
/// - host: default `localhost`; IPv6 in brackets. port: default 5672 (`amqp`) or 5671 (`amqps`).
/// - vhost: the percent-decoded path; an empty path, `/` and `/%2F` all mean the vhost `/`
///   (by convention here, unlike the AMQP URI spec, where `amqp://h/` is the empty vhost).
/// - `heartbeat`: seconds, default 30; 0 turns heartbeats off.
/// - `connection_timeout`: milliseconds for the TCP (and TLS) connect, default 5000.
/// - TLS (`amqps` only): `cacertfile`, `certfile`, `keyfile` in the query, or else the
///   environment variables `SR_AMQP_CACERT`, `SR_AMQP_CERT`, `SR_AMQP_KEY`
///   (`SR_AMQP_CLIENT_CERT`/`SR_AMQP_CLIENT_KEY`, written by scripts/rabbitmq-start.sh, are
///   accepted too). A broker with a private CA needs that CA's file here: peer and hostname
///   verification are always on.
public struct AMQPURL: Sendable, Hashable, CustomStringConvertible {
    /// True for `amqps`: TLS with peer and hostname verification.
    public var useTLS: Bool
    public var host: String
    public var port: Int
    public var user: String
    public var password: String
    public var vhost: String
    /// Heartbeat interval proposed to the broker; `.zero` disables heartbeats. Default 30 s.
    public var heartbeat: Duration
    /// Bound on the TCP + TLS connect. Default 5 s.
    public var connectionTimeout: Duration
    /// PEM file of the CA that signed the broker's certificate (amqps).
    public var caCertificateFile: String?
    /// PEM client certificate and its key, for brokers that verify clients (amqps).
    public var certificateFile: String?
    public var keyFile: String?

    public init(useTLS: Bool = false, host: String = "localhost", port: Int? = nil,
                user: String = "guest", password: String = "guest", vhost: String = "/",
                heartbeat: Duration = .seconds(30), connectionTimeout: Duration = .seconds(5),
                caCertificateFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.useTLS = useTLS
        self.host = host
        self.port = port ?? (useTLS ? 5671 : 5672)
        self.user = user
        self.password = password
        self.vhost = vhost
        self.heartbeat = heartbeat
        self.connectionTimeout = connectionTimeout
        self.caCertificateFile = caCertificateFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }

    /// Parses `string`; TLS file names missing from the query come from `environment`.
    /// Throws `TransportError(.invalidURL, …)` saying what is wrong and how it should look.
    public init(_ string: String, environment: [String: String] = [:]) throws {
        let shown = AMQPURL.redacted(string)
        func invalid(_ why: String) -> TransportError {
            TransportError(.invalidURL, "invalid AMQP URL '\(shown)': \(why) (expected amqp[s]://user:password@host:port/vhost)")
        }
        guard let schemeEnd = string.range(of: "://") else {
            throw invalid("no scheme; it must start with amqp:// or amqps://")
        }
        let scheme = string[..<schemeEnd.lowerBound].lowercased()
        switch scheme {
        case "amqp": useTLS = false
        case "amqps": useTLS = true
        default: throw invalid("unsupported scheme '\(scheme)'; use amqp:// or amqps://")
        }
        var rest = Substring(string[schemeEnd.upperBound...])
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var path: Substring = ""
        let authority: Substring
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
        }

        // userinfo@hostport; the last '@' splits them, so a stray '@' in a password still parses.
        var hostPort = authority
        user = "guest"
        password = "guest"
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            let rawUser: Substring
            let rawPassword: Substring?
            if let colon = userInfo.firstIndex(of: ":") {
                rawUser = userInfo[..<colon]
                rawPassword = userInfo[userInfo.index(after: colon)...]
            } else {
                rawUser = userInfo
                rawPassword = nil
            }
            guard let u = AMQPURL.percentDecode(rawUser) else { throw invalid("bad percent-encoding in the user name") }
            user = u
            if let rawPassword {
                guard let p = AMQPURL.percentDecode(rawPassword) else { throw invalid("bad percent-encoding in the password") }
                password = p
            } else {
                password = ""
            }
            if user.isEmpty { throw invalid("empty user name before '@'") }
        }

        var portText: Substring? = nil
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("unterminated '[' in an IPv6 host") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected text after the IPv6 host") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = String(hostPort)
        }
        guard let decodedHost = AMQPURL.percentDecode(Substring(host)) else { throw invalid("bad percent-encoding in the host") }
        host = decodedHost.isEmpty ? "localhost" : decodedHost
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else {
                throw invalid("port '\(portText)' is not a number in 1…65535")
            }
            port = p
        } else {
            port = useTLS ? 5671 : 5672
        }

        if path.isEmpty {
            vhost = "/"
        } else {
            guard !path.contains("/") else {
                throw invalid("the vhost must be one path segment; percent-encode '/' in it as %2F")
            }
            guard let v = AMQPURL.percentDecode(path) else { throw invalid("bad percent-encoding in the vhost") }
            vhost = v
        }

        heartbeat = .seconds(30)
        connectionTimeout = .seconds(5)
        var fromQuery = (cacert: String?.none, cert: String?.none, key: String?.none)
        for item in queryItems(query) {
            guard let value = AMQPURL.percentDecode(item.value) else {
                throw invalid("bad percent-encoding in query parameter '\(item.key)'")
            }
            switch item.key {
            case "heartbeat":
                guard let s = Int(value), (0...65535).contains(s) else {
                    throw invalid("heartbeat must be whole seconds in 0…65535, got '\(value)'")
                }
                heartbeat = .seconds(s)
            case "connection_timeout":
                guard let ms = Int(value), ms > 0 else {
                    throw invalid("connection_timeout must be a positive number of milliseconds, got '\(value)'")
                }
                connectionTimeout = .milliseconds(ms)
            case "cacertfile": fromQuery.cacert = value
            case "certfile": fromQuery.cert = value
            case "keyfile": fromQuery.key = value
            default:
                throw invalid("unknown query parameter '\(item.key)' (supported: heartbeat, connection_timeout, cacertfile, certfile, keyfile)")
            }
        }

        if useTLS {
            func env(_ names: String...) -> String? {
                for n in names { if let v = environment[n], !v.isEmpty { return v } }
                return nil
            }
            caCertificateFile = fromQuery.cacert ?? env("SR_AMQP_CACERT")
            certificateFile = fromQuery.cert ?? env("SR_AMQP_CERT", "SR_AMQP_CLIENT_CERT")
            keyFile = fromQuery.key ?? env("SR_AMQP_KEY", "SR_AMQP_CLIENT_KEY")
            if (certificateFile == nil) != (keyFile == nil) {
                throw invalid(certificateFile == nil
                    ? "a client key is set but no client certificate (certfile= or SR_AMQP_CERT)"
                    : "a client certificate is set but no key (keyfile= or SR_AMQP_KEY)")
            }
        } else {
            if fromQuery.cacert != nil || fromQuery.cert != nil || fromQuery.key != nil {
                throw invalid("cacertfile/certfile/keyfile need TLS: use amqps://")
            }
            // Plain amqp ignores SR_AMQP_CACERT & co.: the start script exports both URLs.
            caCertificateFile = nil
            certificateFile = nil
            keyFile = nil
        }
    }

    /// `amqp[s]://user:***@host:port/vhost` — never the password.
    public var description: String {
        let scheme = useTLS ? "amqps" : "amqp"
        let h = host.contains(":") ? "[\(host)]" : host
        let v = vhost == "/" ? "" : AMQPURL.percentEncode(vhost)
        return "\(scheme)://\(AMQPURL.percentEncode(user)):***@\(h):\(port)/\(v)"
    }

    /// The URL text with any password replaced by `***`, for error messages about unparsable URLs.
    static func redacted(_ string: String) -> String {
        guard let schemeEnd = string.range(of: "://") else { return string }
        let rest = string[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return string }
        let userInfo = rest[..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return string }
        return String(string[..<colon]) + ":***" + String(rest[at...])
    }

    static func percentDecode(_ s: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count)
        var it = s.utf8.makeIterator()
        while let b = it.next() {
            if b == UInt8(ascii: "%") {
                guard let h = it.next(), let l = it.next(), let hv = hexValue(h), let lv = hexValue(l) else { return nil }
                bytes.append(hv << 4 | lv)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    static func percentEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = String(b, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

private func queryItems(_ query: Substring) -> [(key: String, value: Substring)] {
    query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
        if let eq = pair.firstIndex(of: "=") {
            return (String(pair[..<eq]), pair[pair.index(after: eq)...])
        }
        return (String(pair), Substring(""))
    }
}
