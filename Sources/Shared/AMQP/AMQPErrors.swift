// The one place where rabbitmq-c status codes and broker replies become TransportErrors that say
// what happened and what to do.
internal import CSRRabbitMQ
import Foundation
import SRTransport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure as rabbitmq-c or the broker reported it, before translation.
enum AMQPFailure {
    /// A rabbitmq-c status code (negative), with what the OS said when we know it.
    case library(status: Int32, reason: String?)
    /// connection.close from the broker: the whole connection is gone.
    case connectionClosed(code: UInt16, text: String)
    /// channel.close from the broker: one channel is gone.
    case channelClosed(code: UInt16, text: String)
    case unexpected(String)

    /// Decodes a reply (copying the broker's text); nil when it is a normal reply.
    init?(_ reply: amqp_rpc_reply_t) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return nil
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            self = .library(status: reply.library_error, reason: nil)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            switch reply.reply.id {
            case AMQP_CONNECTION_CLOSE_METHOD:
                let m = reply.reply.decoded!.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                self = .connectionClosed(code: m.reply_code, text: m.reply_text.swiftString)
            case AMQP_CHANNEL_CLOSE_METHOD:
                let m = reply.reply.decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                self = .channelClosed(code: m.reply_code, text: m.reply_text.swiftString)
            default:
                self = .unexpected("unexpected AMQP method \(reply.reply.id) in reply")
            }
        default:
            self = .unexpected("no reply from rabbitmq-c")
        }
    }

    var isConnectionLevel: Bool {
        switch self {
        case .library(let status, _): Loop.isConnectionLevel(status)
        case .connectionClosed, .unexpected: true
        case .channelClosed: false
        }
    }

    var replyCode: UInt16 {
        switch self {
        case .connectionClosed(let code, _), .channelClosed(let code, _): code
        default: 0
        }
    }

    var replyText: String {
        switch self {
        case .connectionClosed(_, let text), .channelClosed(_, let text): text
        default: ""
        }
    }
}

enum Phase {
    case loadingCA(String)
    case loadingClientCertificate(cert: String, key: String)
    case connect, login
    case operation(String)
}

/// Translates a failure into a `TransportError` that says what happened and what to do.
func transportError(_ failure: AMQPFailure, url: AMQPURL, phase: Phase) -> TransportError {
    let action: String = switch phase {
    case .loadingCA, .loadingClientCertificate: "loading TLS files"
    case .connect: "connecting"
    case .login: "logging in"
    case .operation(let a): a
    }
    switch failure {
    case .library(let status, let osReason):
        let detail = String(cString: amqp_error_string2(status))
        if case .loadingCA(let path) = phase {
            return TransportError(.tlsFailed, "cannot use '\(path)' as the CA certificate (\(detail)) — it must be a PEM file (SR_AMQP_CACERT or ?cacertfile=)")
        }
        if case .loadingClientCertificate(let cert, let key) = phase {
            return TransportError(.tlsFailed, "cannot use the client certificate '\(cert)' with the key '\(key)' (\(detail)) — PEM files of one pair? (SR_AMQP_CERT, SR_AMQP_KEY)")
        }
        switch status {
        case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue:
            return TransportError(.tlsFailed, "TLS to \(url): the broker's certificate does not name '\(url.host)' as a DNS subjectAltName (rabbitmq-c 0.11 ignores IP entries) — add DNS:\(url.host) to the certificate or connect by a name it lists, e.g. localhost")
        case AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue:
            return TransportError(.tlsFailed, "TLS to \(url): the broker's certificate is not signed by the CA in '\(url.caCertificateFile ?? "(none given)")' — wrong CA file? set SR_AMQP_CACERT (or ?cacertfile=) to the CA that signed the broker's certificate")
        case AMQP_STATUS_SSL_CONNECTION_FAILED.rawValue:
            return TransportError(.tlsFailed, "TLS handshake with \(url) failed — is port \(url.port) a TLS (amqps) listener? amqps:// to the plain AMQP port fails like this")
        case AMQP_STATUS_SSL_ERROR.rawValue, AMQP_STATUS_SSL_SET_ENGINE_FAILED.rawValue:
            return TransportError(.tlsFailed, "TLS error with \(url) while \(action) (\(detail)) — if the broker requires a client certificate, set SR_AMQP_CERT and SR_AMQP_KEY; check that SR_AMQP_CACERT names the broker's CA")
        case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED.rawValue:
            return TransportError(.connectionFailed, "cannot reach RabbitMQ at \(url): host '\(url.host)' does not resolve — check SR_AMQP_URL")
        case AMQP_STATUS_SOCKET_ERROR.rawValue, AMQP_STATUS_TIMEOUT.rawValue, AMQP_STATUS_CONNECTION_CLOSED.rawValue,
             AMQP_STATUS_SOCKET_CLOSED.rawValue, AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue, AMQP_STATUS_TCP_ERROR.rawValue:
            let reason: String
            if let osReason {
                reason = osReason
            } else if status == AMQP_STATUS_TIMEOUT.rawValue, case .connect = phase {
                reason = "no answer within \(url.connectionTimeout)"
            } else {
                reason = detail
            }
            switch phase {
            case .connect:
                return TransportError(.connectionFailed, "cannot reach RabbitMQ at \(url): \(reason) — is it running? set SR_AMQP_URL")
            case .login:
                return TransportError(.connectionFailed, "RabbitMQ at \(url) dropped the connection while logging in (\(reason)) — an amqp:// URL pointing at a TLS port, or a broker refusing the client?")
            case .operation, .loadingCA, .loadingClientCertificate:
                return TransportError(.connectionFailed, "lost the connection to RabbitMQ at \(url) while \(action): \(reason)")
            }
        default:
            return TransportError(.protocolError, "rabbitmq-c failed while \(action) with \(url): \(detail) (status \(status))")
        }
    case .connectionClosed(let code, let text):
        switch code {
        case 403:
            return TransportError(.authenticationFailed, "RabbitMQ at \(url) refused the login of user '\(url.user)' (\(text)) — wrong user or password in SR_AMQP_URL? (guest may log in from localhost only)")
        case 530:
            return TransportError(.authenticationFailed, "user '\(url.user)' may not use vhost '\(url.vhost)' at \(url) (\(text)) — grant it: rabbitmqctl set_permissions -p '\(url.vhost)' '\(url.user)' '.*' '.*' '.*'")
        case 320:
            return TransportError(.connectionFailed, "RabbitMQ at \(url) closed the connection while \(action) (\(text)): the broker is shutting down or an operator closed it")
        default:
            return TransportError(.protocolError, "RabbitMQ at \(url) closed the connection while \(action): \(code) \(text)")
        }
    case .channelClosed(let code, let text):
        switch code {
        case 404:
            return TransportError(.notFound, "\(action): \(text)")
        case 406:
            return TransportError(.precondition, "\(action): \(text) — a queue's arguments must be identical on every declare; delete it or declare it as it is")
        case 405:
            return TransportError(.precondition, "\(action): \(text) — an exclusive queue belongs to another connection")
        case 403:
            return TransportError(.authenticationFailed, "\(action): \(text) — user '\(url.user)' lacks the permission on vhost '\(url.vhost)'")
        default:
            return TransportError(.protocolError, "\(action): RabbitMQ closed the channel: \(code) \(text)")
        }
    case .unexpected(let what):
        return TransportError(.protocolError, "\(action) with \(url): \(what)")
    }
}
