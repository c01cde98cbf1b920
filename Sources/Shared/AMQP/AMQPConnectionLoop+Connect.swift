// The connection's thread, connecting: socket (TCP or TLS with its files checked first), login,
// and, when connecting fails, a plain TCP probe to learn what the OS says about it.
internal import CSRRabbitMQ
import SRCore
import Foundation
import SRTransport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Loop {
    func connect() throws {
        guard let c = amqp_new_connection() else {
            throw TransportError(.connectionFailed, "rabbitmq-c could not allocate a connection (out of memory)")
        }
        var handedOver = false
        defer { if !handedOver { amqp_destroy_connection(c) } }

        let socket: OpaquePointer?
        if url.useTLS {
            socket = amqp_ssl_socket_new(c)
            guard let socket else { throw TransportError(.tlsFailed, "rabbitmq-c could not create a TLS socket") }
            amqp_ssl_socket_set_verify_peer(socket, 1)
            amqp_ssl_socket_set_verify_hostname(socket, 1)
            if let ca = url.caCertificateFile {
                try Loop.checkReadable(ca, "CA certificate", variable: "SR_AMQP_CACERT")
                let status = amqp_ssl_socket_set_cacert(socket, ca)
                if status != AMQP_STATUS_OK.rawValue {
                    throw transportError(.library(status: status, reason: nil), url: url, phase: .loadingCA(ca))
                }
            }
            if let cert = url.certificateFile, let key = url.keyFile {
                try Loop.checkReadable(cert, "client certificate", variable: "SR_AMQP_CERT")
                try Loop.checkReadable(key, "client key", variable: "SR_AMQP_KEY")
                let status = amqp_ssl_socket_set_key(socket, cert, key)
                if status != AMQP_STATUS_OK.rawValue {
                    throw transportError(.library(status: status, reason: nil), url: url,
                                         phase: .loadingClientCertificate(cert: cert, key: key))
                }
            }
        } else {
            socket = amqp_tcp_socket_new(c)
            guard socket != nil else { throw TransportError(.connectionFailed, "rabbitmq-c could not create a socket") }
        }

        var timeout = Loop.timeValue(url.connectionTimeout)
        let status = amqp_socket_open_noblock(socket, url.host, Int32(url.port), &timeout)
        if status != AMQP_STATUS_OK.rawValue {
            // rabbitmq-c drops the socket's SO_ERROR; ask the OS again to say *why*.
            let reason = status == AMQP_STATUS_SOCKET_ERROR.rawValue || status == AMQP_STATUS_TIMEOUT.rawValue
                ? probeTCP(host: url.host, port: url.port, timeout: url.connectionTimeout) : nil
            throw transportError(.library(status: status, reason: reason), url: url, phase: .connect)
        }
        let heartbeat = Int32(clamping: url.heartbeat.components.seconds)
        let reply = csrrabbitmq_login_plain(c, url.vhost, 0, 131_072, heartbeat, url.user, url.password)
        if let failure = AMQPFailure(reply) {
            throw transportError(failure, url: url, phase: .login)
        }
        var rpcTimeout = Loop.timeValue(configuration.operationTimeout)
        _ = amqp_set_rpc_timeout(c, &rpcTimeout)
        handedOver = true
        conn = c
    }

    private static func checkReadable(_ path: String, _ what: String, variable: String) throws {
        if access(path, R_OK) != 0 {
            throw TransportError(.tlsFailed, "cannot read the \(what) file '\(path)': \(String(cString: strerror(errno))) (set \(variable) or the URL query)")
        }
    }

    static func timeValue(_ d: Duration) -> timeval {
        let (s, atto) = d.components
        return timeval(tv_sec: Int(max(0, s)), tv_usec: Int(max(0, atto / 1_000_000_000_000)))
    }
}

/// Connects once more with plain sockets, only to learn why rabbitmq-c could not ("connection
/// refused", "no route to host", a timeout); nil if it now works or the name does not resolve.
func probeTCP(host: String, port: Int, timeout: Duration) -> String? {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    #if canImport(Glibc)
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    #else
    hints.ai_socktype = SOCK_STREAM
    #endif
    var list: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return nil }
    defer { freeaddrinfo(list) }
    let ms = Int32(clamping: timeout.wholeMilliseconds)
    var lastError: Int32 = 0
    var next: UnsafeMutablePointer<addrinfo>? = first
    while let ai = next {
        next = ai.pointee.ai_next
        let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
        guard fd >= 0 else { continue }
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        if connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return nil }
        guard errno == EINPROGRESS else {
            lastError = errno
            continue
        }
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if poll(&p, 1, ms) <= 0 {
            lastError = ETIMEDOUT
            continue
        }
        var soError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
        if soError == 0 { return nil }
        lastError = soError
    }
    return lastError == 0 ? nil : String(cString: strerror(lastError)).lowercased()
}
