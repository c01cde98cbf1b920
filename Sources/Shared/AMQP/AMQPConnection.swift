// One AMQP connection over rabbitmq-c, confined to a dedicated OS thread — the only file that
// touches the C library. Async callers queue commands; the thread runs them, reads every frame
// itself (deliveries, publisher confirms, closes), and reconnects with backoff when the broker
// goes away, re-declaring the topology, re-subscribing and re-publishing unconfirmed messages.
//
// Why a frame loop of our own instead of amqp_consume_message: it never blocks on one kind of
// frame, so confirms, deliveries, channel closes and heartbeats are all handled as they come,
// and many publishes can await their confirms at once (pipelining) without stalling the thread.
import SRTransport

internal import CSRRabbitMQ
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Public-facing (module-internal) handle

/// A connection to RabbitMQ, usable from any task. Every call is executed on the connection's
/// own thread, in submission order.
final class AMQPConnection: Sendable {
    let url: AMQPURL
    private let configuration: AMQPTransport.Configuration
    private let inbox: Inbox
    private let loop: Loop
    private let exited: ExitSignal
    private let nextSubscriptionID = Atomic<UInt64>(1)

    /// Connects (failing fast with a clear error) and starts the connection's thread.
    static func open(url: AMQPURL, role: String, configuration: AMQPTransport.Configuration,
                     topology: TopologyRecord, logger: Logger) async throws -> AMQPConnection {
        let connection = try AMQPConnection(url: url, role: role, configuration: configuration,
                                            topology: topology, logger: logger)
        try await withCheckedThrowingContinuation { (opened: CheckedContinuation<Void, any Error>) in
            let loop = connection.loop
            let thread = Thread { loop.run(opened: opened) }
            thread.name = "sr-amqp-\(role)"
            // rabbitmq-c decodes header tables recursively on this thread before we see them. A
            // content header fits one frame (frame_max 128 KiB below), so a hostile table nests
            // at most ~26 000 levels (5 bytes each): 64 MiB of stack (reserved, touched only as
            // used) holds that depth where 1 MiB did not (a segfault killed every consumer).
            thread.stackSize = 64 << 20
            thread.start()
        }
        return connection
    }

    private init(url: AMQPURL, role: String, configuration: AMQPTransport.Configuration,
                 topology: TopologyRecord, logger: Logger) throws {
        self.url = url
        self.configuration = configuration
        inbox = try Inbox()
        exited = ExitSignal()
        var logger = logger
        logger[metadataKey: "amqp.connection"] = "\(role)"
        loop = Loop(url: url, configuration: configuration, topology: topology, inbox: inbox,
                    exited: exited, logger: logger)
    }

    deinit {
        // Dropped without close(): still stop the thread (it holds no reference back to us).
        inbox.requestClose()
    }

    /// Reconnections after the first connect.
    var reconnections: Int { loop.reconnections.load(ordering: .relaxed) }

    func declare(_ exchange: ExchangeSpec) async throws {
        try await perform("declaring exchange '\(exchange.name)'") { try $0.declare(exchange) }
    }

    func declare(_ queue: QueueSpec) async throws -> String {
        try await perform("declaring queue '\(queue.name)'") { try $0.declare(queue) }
    }

    func bind(_ binding: BindingSpec) async throws {
        try await perform("binding queue '\(binding.queue)' to exchange '\(binding.exchange)'") { try $0.bind(binding) }
    }

    func messageCount(queue: String) async throws -> Int {
        try await perform("counting messages in queue '\(queue)'") { try $0.messageCount(queue: queue) }
    }

    /// Returns once the broker confirmed the message (a basic.ack for its sequence number). A
    /// message whose connection drops before the confirm is published again on the next one.
    func publish(_ message: Message, exchange: String, routingKey: String) async throws {
        let deadline = ContinuousClock.now + configuration.operationTimeout
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let completion = PublishCompletion { error in
                if let error { continuation.resume(throwing: error) } else { continuation.resume() }
            }
            submitPublish(Publication(message, exchange: exchange, routingKey: routingKey), deadline: deadline, completion)
        }
    }

    /// Publishes `batch` in order and returns once every message is confirmed. The messages go
    /// out back to back and their confirms are awaited together (pipelined): one round trip
    /// for the batch instead of one per message. Throws the first failure, after every message
    /// of the batch has been settled.
    func publish(_ batch: [Publication]) async throws {
        guard !batch.isEmpty else { return }
        let deadline = ContinuousClock.now + configuration.operationTimeout
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let waiter = BatchWaiter(count: batch.count, continuation: continuation)
            for p in batch { submitPublish(p, deadline: deadline, PublishCompletion(waiter.settle)) }
        }
    }

    private func submitPublish(_ p: Publication, deadline: ContinuousClock.Instant, _ completion: PublishCompletion) {
        let pending = PendingPublish(message: p.message, exchange: p.exchange, routingKey: p.routingKey,
                                     deadline: deadline, continuation: completion)
        let job = Job(what: "publishing to exchange '\(p.exchange)'", needsConnection: false, deadline: deadline,
                      execute: { $0.publish(pending) },
                      fail: { completion.resume(throwing: $0) })
        if !inbox.submit(job) { completion.resume(throwing: closedError) }
    }

    func subscribe(queue: String, prefetch: Int) async throws -> Subscription {
        guard prefetch >= 0 else {
            throw TransportError(.precondition, "prefetch must be 0 (unlimited) or more, got \(prefetch)")
        }
        let id = nextSubscriptionID.wrappingAdd(1, ordering: .relaxed).oldValue
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: Delivery.self, throwing: (any Error).self)
        // A consumer that stops iterating (its task cancelled, the stream dropped) cancels the
        // subscription, so its unacked deliveries go back to the queue.
        let inbox = self.inbox
        continuation.onTermination = { termination in
            if case .cancelled = termination {
                _ = inbox.submit(Job(what: "cancelling a subscription", needsConnection: false,
                                     deadline: .now, execute: { $0.cancelSubscription(id) }, fail: { _ in }))
            }
        }
        let state = SubscriptionState(id: id, queue: queue, prefetch: prefetch, continuation: continuation)
        try await perform("subscribing to queue '\(queue)'") { try $0.subscribe(state) }
        return Subscription(
            deliveries: stream,
            ack: { tag in try self.settle(id, tag, .ack) },
            reject: { tag, requeue in try self.settle(id, tag, requeue ? .requeue : .discard) },
            cancel: { await self.cancelSubscription(id) })
    }

    /// Graceful: waits (up to `closeTimeout`) for outstanding confirms, closes the connection,
    /// finishes every subscription's stream and joins the thread.
    func close() async {
        inbox.requestClose()
        await exited.wait()
    }

    // MARK: internals

    private var closedError: TransportError {
        TransportError(.closed, "the AMQP connection to \(url) is closed")
    }

    /// Returns once the thread has the ack (or reject) in its queue, ahead of anything submitted
    /// later: basic.ack has no reply, and the only failure worth reporting — a closed
    /// connection — is known here. This saves a thread round trip per message.
    private func settle(_ id: UInt64, _ tag: DeliveryTag, _ how: Settlement) throws {
        let job = Job(what: "acknowledging a delivery", needsConnection: false, deadline: .now,
                      execute: { $0.settle(id, tag, how) }, fail: { _ in })
        if !inbox.submit(job) { throw closedError }
    }

    private func cancelSubscription(_ id: UInt64) async {
        _ = try? await perform("cancelling a subscription", needsConnection: false) { $0.cancelSubscription(id) }
    }

    private func perform<T: Sendable>(_ what: String, needsConnection: Bool = true,
                                      _ body: @escaping @Sendable (Loop) throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + configuration.operationTimeout
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = Job(what: what, needsConnection: needsConnection, deadline: deadline,
                          execute: { loop in continuation.resume(returning: try body(loop)) },
                          fail: { continuation.resume(throwing: $0) })
            if !inbox.submit(job) { continuation.resume(throwing: closedError) }
        }
    }
}

/// Exchanges, queues and bindings declared so far, re-declared after a reconnect. Exclusive
/// queues (and bindings to them) are not recorded: they die with their connection.
final class TopologyRecord: Sendable {
    private struct State {
        var exchanges: [ExchangeSpec] = []
        var queues: [QueueSpec] = []
        var bindings: [BindingSpec] = []
    }
    private let state = Mutex(State())

    init() {}

    func record(_ exchange: ExchangeSpec) {
        state.withLock { s in
            if let i = s.exchanges.firstIndex(where: { $0.name == exchange.name }) { s.exchanges[i] = exchange } else { s.exchanges.append(exchange) }
        }
    }

    func record(_ queue: QueueSpec) {
        state.withLock { s in
            if let i = s.queues.firstIndex(where: { $0.name == queue.name }) { s.queues[i] = queue } else { s.queues.append(queue) }
        }
    }

    func record(_ binding: BindingSpec) {
        state.withLock { s in if !s.bindings.contains(binding) { s.bindings.append(binding) } }
    }

    var snapshot: (exchanges: [ExchangeSpec], queues: [QueueSpec], bindings: [BindingSpec]) {
        state.withLock { ($0.exchanges, $0.queues, $0.bindings) }
    }
}

// MARK: - Commands and their queue

/// A command for the connection's thread. `execute` either completes the caller's continuation
/// or throws: `ConnectionLost` re-queues the job until the next connection, anything else goes
/// to `fail`. A job is completed exactly once.
private struct Job: Sendable {
    let what: String
    /// False for jobs that cope with a missing connection themselves (publish, ack, cancel).
    let needsConnection: Bool
    let deadline: ContinuousClock.Instant
    var attempts = 0
    let execute: @Sendable (Loop) throws -> Void
    let fail: @Sendable (any Error) -> Void
}

/// The lock-protected hand-over from async callers to the thread, plus a pipe that wakes the
/// thread out of poll(2) when a job arrives.
private final class Inbox: Sendable {
    private struct State {
        var jobs: [Job] = []
        var closeRequested = false
        var finished = false
        var signaled = false
    }
    private let state = Mutex(State())
    let wakeFD: Int32
    private let signalFD: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw TransportError(.connectionFailed, "cannot create a pipe for the AMQP thread: \(String(cString: strerror(errno)))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeFD = fds[0]
        signalFD = fds[1]
    }

    /// False once the connection is closing or closed: the caller must fail the job itself.
    func submit(_ job: Job) -> Bool {
        state.withLock { s in
            guard !s.finished, !s.closeRequested else { return false }
            s.jobs.append(job)
            wake(&s)
            return true
        }
    }

    func requestClose() {
        state.withLock { s in
            guard !s.finished else { return }
            s.closeRequested = true
            wake(&s)
        }
    }

    /// Drains the wake pipe first, then takes the jobs: a job submitted after the drain either
    /// is taken now or writes a fresh wake byte.
    func take() -> (jobs: [Job], closeRequested: Bool) {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(wakeFD, &buffer, buffer.count) > 0 {}
        return state.withLock { s in
            s.signaled = false
            defer { s.jobs = [] }
            return (s.jobs, s.closeRequested)
        }
    }

    /// Marks the inbox finished, closes the pipe (under the lock, so no submit writes to a
    /// closed descriptor) and returns the jobs nobody took.
    func finish() -> [Job] {
        state.withLock { s in
            s.finished = true
            close(wakeFD)
            close(signalFD)
            defer { s.jobs = [] }
            return s.jobs
        }
    }

    private func wake(_ s: inout State) {
        guard !s.signaled else { return }
        s.signaled = true
        var byte: UInt8 = 1
        _ = write(signalFD, &byte, 1)
    }
}

/// Lets `close()` await the end of the thread (a join).
private final class ExitSignal: Sendable {
    private let state = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s in
                if s.done { return true }
                s.waiters.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    func signal() {
        let waiters = state.withLock { s in
            s.done = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }
}

private enum Settlement: Sendable { case ack, requeue, discard }

private struct PendingPublish: Sendable {
    let message: Message
    let exchange: String
    let routingKey: String
    let deadline: ContinuousClock.Instant
    let continuation: PublishCompletion
    var sequence: UInt64 = 0
}

/// How a publish is completed, exactly once: a single caller's continuation, or one member of
/// a batch (`BatchWaiter`).
private struct PublishCompletion: Sendable {
    let done: @Sendable ((any Error)?) -> Void
    init(_ done: @escaping @Sendable ((any Error)?) -> Void) { self.done = done }
    func resume() { done(nil) }
    func resume(throwing error: any Error) { done(error) }
}

/// Resumes a batch's caller once every message of the batch is settled (with the first error).
private final class BatchWaiter: Sendable {
    private let state: Mutex<(remaining: Int, error: (any Error)?, continuation: CheckedContinuation<Void, any Error>?)>

    init(count: Int, continuation: CheckedContinuation<Void, any Error>) {
        state = Mutex((count, nil, continuation))
    }

    @Sendable func settle(_ error: (any Error)?) {
        let done = state.withLock { s -> (CheckedContinuation<Void, any Error>, (any Error)?)? in
            if s.error == nil { s.error = error }
            s.remaining -= 1
            guard s.remaining == 0, let c = s.continuation else { return nil }
            s.continuation = nil
            return (c, s.error)
        }
        guard let (continuation, error) = done else { return }
        if let error { continuation.resume(throwing: error) } else { continuation.resume() }
    }
}

/// A subscription as the thread sees it. Only the thread touches it after hand-over.
private final class SubscriptionState: @unchecked Sendable {
    let id: UInt64
    let queue: String
    let prefetch: Int
    let continuation: AsyncThrowingStream<Delivery, any Error>.Continuation
    /// The channel of the current incarnation; nil while disconnected.
    var channel: UInt16?
    /// Unique per incarnation (subscription × connection): older tags are stale.
    var generation: UInt64 = 0
    /// Delivered, not yet acked or rejected, in this incarnation; settling anything else is a
    /// no-op (a second ack of one tag would otherwise make the broker close the channel).
    var unsettled = Set<UInt64>()

    init(id: UInt64, queue: String, prefetch: Int, continuation: AsyncThrowingStream<Delivery, any Error>.Continuation) {
        self.id = id
        self.queue = queue
        self.prefetch = prefetch
        self.continuation = continuation
    }
}

/// Thrown inside the thread when the connection died during a command.
private struct ConnectionLost: Error {
    let error: TransportError
}

/// A message being assembled from its method, header and body frames.
private struct PartialContent {
    enum Target {
        case delivery(tag: UInt64, redelivered: Bool, exchange: String, routingKey: String)
        case returned
    }
    let target: Target
    var message: Message?
    var expected = 0
    var body: [UInt8] = []
}

// MARK: - The thread

/// Everything here runs on the connection's own thread (hence `@unchecked Sendable`): the
/// rabbitmq-c state is not thread safe and its calls block.
private final class Loop: @unchecked Sendable {
    let url: AMQPURL
    let configuration: AMQPTransport.Configuration
    let topology: TopologyRecord
    let inbox: Inbox
    let exited: ExitSignal
    let logger: Logger
    let reconnections = Atomic<Int>(0)

    static let controlChannel: UInt16 = 1
    static let publishChannel: UInt16 = 2
    static let firstSubscriptionChannel: UInt16 = 3

    private var conn: amqp_connection_state_t?
    private var waiting: [Job] = []
    private var closing = false
    private var closeDeadline = ContinuousClock.now

    private var controlOpen = false
    private var usedChannels = Set<UInt16>()
    private var contents: [UInt16: PartialContent] = [:]

    private var publishOpen = false
    private var nextSequence: UInt64 = 1
    /// Sent on the current connection, awaiting basic.ack/nack; ascending sequence numbers.
    private var unconfirmed: [PendingPublish] = []
    /// Waiting for a connection (or a re-opened publishing channel); in publish order.
    private var unsent: [PendingPublish] = []

    private var subscriptions: [UInt64: SubscriptionState] = [:]
    private var subscriptionByChannel: [UInt16: UInt64] = [:]
    private var exclusiveQueues = Set<String>()
    private var generations: UInt64 = 0

    private var lastError: TransportError?
    private var reconnectDelay: Duration
    private var nextAttempt = ContinuousClock.now
    private var failedAttempts = 0
    private var lostAt = ContinuousClock.now
    private var reconnecting = false

    init(url: AMQPURL, configuration: AMQPTransport.Configuration, topology: TopologyRecord,
         inbox: Inbox, exited: ExitSignal, logger: Logger) {
        self.url = url
        self.configuration = configuration
        self.topology = topology
        self.inbox = inbox
        self.exited = exited
        self.logger = logger
        reconnectDelay = configuration.minimumReconnectDelay
    }

    func run(opened: CheckedContinuation<Void, any Error>) {
        do {
            try connect()
        } catch {
            opened.resume(throwing: error)
            shutDown()
            return
        }
        opened.resume()
        logger.debug("connected to RabbitMQ", metadata: ["amqp.url": "\(url)"])
        while true {
            let (jobs, closeRequested) = inbox.take()
            waiting.append(contentsOf: jobs)
            if closeRequested && !closing {
                closing = true
                closeDeadline = .now + configuration.closeTimeout
            }
            runWaitingJobs()
            if conn != nil && !unsent.isEmpty { flushUnsent() }
            if conn == nil && !closing && ContinuousClock.now >= nextAttempt { reconnect() }
            expireDeadlines()
            if closing && (conn == nil || (unconfirmed.isEmpty && unsent.isEmpty) || ContinuousClock.now >= closeDeadline) {
                break
            }
            waitForWork()
            if conn != nil { readFrames() }
        }
        shutDown()
    }

    // MARK: commands (called by jobs)

    func declare(_ exchange: ExchangeSpec) throws {
        try declareExchange(exchange)
        topology.record(exchange)
    }

    func declare(_ queue: QueueSpec) throws -> String {
        let name = try declareQueue(queue)
        if queue.exclusive {
            exclusiveQueues.insert(name)
        } else if !queue.name.isEmpty {
            // Server-named queues cannot be re-declared by name (amq.* is reserved).
            topology.record(queue)
        }
        return name
    }

    func bind(_ binding: BindingSpec) throws {
        try bindQueue(binding)
        if !exclusiveQueues.contains(binding.queue) { topology.record(binding) }
    }

    func messageCount(queue: String) throws -> Int {
        let c = try control()
        let arena = CArena()
        let ok = amqp_queue_declare(c, Loop.controlChannel, arena.bytes(queue), 1, 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(c), channel: Loop.controlChannel, "counting messages in queue '\(queue)'")
        guard let ok else { throw TransportError(.protocolError, "queue.declare-ok without a body for '\(queue)'") }
        return Int(ok.pointee.message_count)
    }

    /// Sends now if connected (and nothing older waits to be re-sent, to keep the order);
    /// otherwise parks the message until the next connection.
    func publish(_ pending: PendingPublish, flushing: Bool = false) {
        guard let c = conn, flushing || unsent.isEmpty else {
            unsent.append(pending)
            return
        }
        do {
            try ensurePublishChannel()
        } catch is ConnectionLost {
            unsent.append(pending)
            return
        } catch {
            pending.continuation.resume(throwing: error)
            return
        }
        let arena = CArena()
        var properties = arena.properties(pending.message)
        let exchange = arena.bytes(pending.exchange)
        let routingKey = arena.bytes(pending.routingKey)
        let status = pending.message.body.withUnsafeBytes { raw in
            amqp_basic_publish(c, Loop.publishChannel, exchange, routingKey, 0, 0, &properties,
                               amqp_bytes_t(len: raw.count, bytes: UnsafeMutableRawPointer(mutating: raw.baseAddress)))
        }
        if status == AMQP_STATUS_OK.rawValue {
            if Trace.enabled, let job = pending.message.headers[Trace.jobHeader]?.stringValue {
                Trace.mark(job, "wire.out \(pending.exchange)")
            }
            var sent = pending
            sent.sequence = nextSequence
            nextSequence += 1
            unconfirmed.append(sent)
        } else if Loop.isConnectionLevel(status) {
            unsent.append(pending)
            connectionLost(.library(status: status, reason: nil), while: "publishing to exchange '\(pending.exchange)'")
        } else {
            pending.continuation.resume(throwing: transportError(
                .library(status: status, reason: nil), url: url, phase: .operation("publishing to exchange '\(pending.exchange)'")))
        }
    }

    func subscribe(_ subscription: SubscriptionState) throws {
        try startConsuming(subscription)
        subscriptions[subscription.id] = subscription
    }

    func settle(_ id: UInt64, _ tag: DeliveryTag, _ how: Settlement) {
        // Cancelled, re-subscribed since, or never delivered here: the broker has already
        // requeued (or will redeliver) the message, so there is nothing to do.
        guard let sub = subscriptions[id], sub.generation == tag.generation, let channel = sub.channel,
              let c = conn, sub.unsettled.remove(tag.value) != nil else { return }
        let status = switch how {
        case .ack: amqp_basic_ack(c, channel, tag.value, 0)
        case .requeue: amqp_basic_reject(c, channel, tag.value, 1)
        case .discard: amqp_basic_reject(c, channel, tag.value, 0)
        }
        if status != AMQP_STATUS_OK.rawValue {
            connectionLost(.library(status: status, reason: nil), while: "acknowledging a delivery")
        }
    }

    func cancelSubscription(_ id: UInt64) {
        guard let sub = subscriptions.removeValue(forKey: id) else { return }
        if let channel = sub.channel {
            // Closing the channel cancels the consumer and requeues its unacked deliveries.
            closeChannel(channel, "cancelling the subscription to queue '\(sub.queue)'")
        }
        sub.continuation.finish()
    }

    // MARK: connecting

    private func connect() throws {
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

    private func reconnect() {
        reconnecting = true
        defer { reconnecting = false }
        do {
            try connect()
            try restore()
            let downtime = ContinuousClock.now - lostAt
            reconnections.add(1, ordering: .relaxed)
            logger.info("reconnected to RabbitMQ", metadata: [
                "amqp.url": "\(url)", "amqp.attempts": "\(failedAttempts + 1)",
                "amqp.downtime_ms": "\(downtime.components.seconds * 1000 + downtime.components.attoseconds / 1_000_000_000_000_000)",
            ])
            failedAttempts = 0
            reconnectDelay = configuration.minimumReconnectDelay
        } catch {
            if let c = conn {
                amqp_destroy_connection(c)
                conn = nil
                resetChannels()
            }
            let error = (error as? ConnectionLost)?.error ?? (error as? TransportError)
                ?? TransportError(.connectionFailed, "\(error)")
            lastError = error
            failedAttempts += 1
            reconnectDelay = min(reconnectDelay * 2, configuration.maximumReconnectDelay)
            scheduleAttempt()
            logger.warning("cannot reconnect to RabbitMQ yet", metadata: [
                "amqp.url": "\(url)", "amqp.attempt": "\(failedAttempts)", "error": "\(error)",
            ])
        }
    }

    /// After a reconnect: the topology first (the publishing side may rely on it), then the
    /// subscriptions, then the messages that were never confirmed.
    private func restore() throws {
        _ = try control()
        let (exchanges, queues, bindings) = topology.snapshot
        for exchange in exchanges { try restoring { try declareExchange(exchange) } }
        for queue in queues { try restoring { _ = try declareQueue(queue) } }
        for binding in bindings { try restoring { try bindQueue(binding) } }
        for sub in subscriptions.values.sorted(by: { $0.id < $1.id }) {
            do {
                try startConsuming(sub)
            } catch let lost as ConnectionLost {
                throw lost
            } catch {
                subscriptions[sub.id] = nil
                sub.continuation.finish(throwing: error)
            }
        }
        flushUnsent()
        if conn == nil { throw ConnectionLost(error: lastError ?? TransportError(.connectionFailed, "connection lost while restoring")) }
    }

    /// Re-declaration errors other than a lost connection are logged, not fatal: someone may
    /// have changed the topology meanwhile, and the affected operation will report it.
    private func restoring(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let lost as ConnectionLost {
            throw lost
        } catch {
            logger.error("re-declaring after a reconnect failed", metadata: ["error": "\(error)"])
        }
    }

    private func scheduleAttempt() {
        let jitter = Double.random(in: 0.5...1.0)
        nextAttempt = .now + reconnectDelay * jitter
    }

    /// The connection is gone: forget its channels, keep unconfirmed messages for the next one.
    private func connectionLost(_ failure: AMQPFailure, while action: String) {
        guard let c = conn else { return }
        let error = transportError(failure, url: url, phase: .operation(action))
        lastError = error
        if case .connectionClosed = failure {
            var ok = amqp_connection_close_ok_t(dummy: 0)
            _ = amqp_send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
        }
        amqp_destroy_connection(c)
        conn = nil
        resetChannels()
        scheduleAttempt()
        if !closing && !reconnecting {
            lostAt = .now
            logger.warning("lost the connection to RabbitMQ; reconnecting", metadata: [
                "amqp.url": "\(url)", "error": "\(error)",
                "amqp.unconfirmed": "\(unsent.count)", "amqp.subscriptions": "\(subscriptions.count)",
            ])
        }
    }

    private func resetChannels() {
        controlOpen = false
        publishOpen = false
        usedChannels = []
        contents = [:]
        subscriptionByChannel = [:]
        unsent = unconfirmed + unsent
        unconfirmed = []
        for sub in subscriptions.values {
            sub.channel = nil
            sub.unsettled = []
        }
        // An exclusive queue dies with its connection, and messages routed to it meanwhile are
        // lost: its subscribers learn it instead of silently resuming on a new queue.
        for (id, sub) in subscriptions where exclusiveQueues.contains(sub.queue) {
            subscriptions[id] = nil
            sub.continuation.finish(throwing: TransportError(.closed,
                "exclusive queue '\(sub.queue)' was deleted when the connection to \(url) dropped; messages routed to it meanwhile are lost — declare a new queue and subscribe again"))
        }
        exclusiveQueues = []
    }

    // MARK: channels

    private func control() throws -> amqp_connection_state_t {
        guard let c = conn else {
            throw ConnectionLost(error: lastError ?? TransportError(.connectionFailed, "not connected to \(url)"))
        }
        if !controlOpen {
            amqp_channel_open(c, Loop.controlChannel)
            try check(amqp_get_rpc_reply(c), channel: Loop.controlChannel, "opening a channel")
            controlOpen = true
        }
        return c
    }

    private func ensurePublishChannel() throws {
        guard let c = conn else {
            throw ConnectionLost(error: lastError ?? TransportError(.connectionFailed, "not connected to \(url)"))
        }
        guard !publishOpen else { return }
        amqp_channel_open(c, Loop.publishChannel)
        try check(amqp_get_rpc_reply(c), channel: Loop.publishChannel, "opening the publishing channel")
        amqp_confirm_select(c, Loop.publishChannel)
        try check(amqp_get_rpc_reply(c), channel: Loop.publishChannel, "enabling publisher confirms")
        publishOpen = true
        nextSequence = 1
    }

    private func allocateChannel() throws -> UInt16 {
        let maxChannel = conn.map { Int(amqp_get_channel_max($0)) } ?? 0
        let limit = UInt16(clamping: maxChannel == 0 ? 2047 : maxChannel)
        var candidate = Loop.firstSubscriptionChannel
        while usedChannels.contains(candidate) {
            guard candidate < limit else {
                throw TransportError(.protocolError, "no free AMQP channel for another subscription (limit \(limit))")
            }
            candidate += 1
        }
        usedChannels.insert(candidate)
        return candidate
    }

    private func startConsuming(_ sub: SubscriptionState) throws {
        guard let c = conn else {
            throw ConnectionLost(error: lastError ?? TransportError(.connectionFailed, "not connected to \(url)"))
        }
        let channel = try allocateChannel()
        let action = "subscribing to queue '\(sub.queue)'"
        amqp_channel_open(c, channel)
        try check(amqp_get_rpc_reply(c), channel: channel, action)
        amqp_basic_qos(c, channel, 0, UInt16(clamping: sub.prefetch), 0)
        try check(amqp_get_rpc_reply(c), channel: channel, action)
        let arena = CArena()
        amqp_basic_consume(c, channel, arena.bytes(sub.queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(c), channel: channel, action)
        generations += 1
        sub.generation = generations
        sub.channel = channel
        sub.unsettled = []
        subscriptionByChannel[channel] = sub.id
    }

    /// A client-initiated channel close; errors only matter if they take the connection down.
    private func closeChannel(_ channel: UInt16, _ action: String) {
        subscriptionByChannel[channel] = nil
        contents[channel] = nil
        guard let c = conn else { return }
        let reply = amqp_channel_close(c, channel, AMQP_REPLY_SUCCESS)
        usedChannels.remove(channel)
        if let failure = AMQPFailure(reply), failure.isConnectionLevel {
            connectionLost(failure, while: action)
        }
    }

    /// The broker closed `channel` (an error on it); we have sent close-ok. Whatever used the
    /// channel learns `error`.
    private func channelClosed(_ channel: UInt16, failure: AMQPFailure, error: TransportError) {
        usedChannels.remove(channel)
        contents[channel] = nil
        switch channel {
        case Loop.controlChannel:
            controlOpen = false
        case Loop.publishChannel:
            publishOpen = false
            // A publish to a missing exchange closes the channel; fail the publishes it names
            // and send the rest again on a new channel.
            var culprits: [PendingPublish] = []
            var innocent: [PendingPublish] = []
            let text = failure.replyText
            for p in unconfirmed {
                if failure.replyCode == 404, text.contains("'\(p.exchange)'") { culprits.append(p) } else { innocent.append(p) }
            }
            if culprits.isEmpty && !innocent.isEmpty {
                culprits = innocent
                innocent = []
            }
            unconfirmed = []
            unsent = innocent + unsent
            for p in culprits { p.continuation.resume(throwing: error) }
        default:
            if let id = subscriptionByChannel.removeValue(forKey: channel), let sub = subscriptions.removeValue(forKey: id) {
                sub.continuation.finish(throwing: error)
            }
        }
    }

    /// Checks an RPC reply. A channel error closes that channel (we answer close-ok) and throws
    /// its `TransportError`; a connection error throws `ConnectionLost`.
    private func check(_ reply: amqp_rpc_reply_t, channel: UInt16, _ action: String) throws {
        guard let failure = AMQPFailure(reply) else { return }
        let error = transportError(failure, url: url, phase: .operation(action))
        if failure.isConnectionLevel {
            connectionLost(failure, while: action)
            throw ConnectionLost(error: error)
        }
        if case .channelClosed = failure, let c = conn {
            var ok = amqp_channel_close_ok_t(dummy: 0)
            let status = amqp_send_method(c, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
            channelClosed(channel, failure: failure, error: error)
            if status != AMQP_STATUS_OK.rawValue {
                connectionLost(.library(status: status, reason: nil), while: action)
            }
        }
        throw error
    }

    // MARK: declarations (no recording; also used when restoring)

    private func declareExchange(_ exchange: ExchangeSpec) throws {
        let c = try control()
        let arena = CArena()
        amqp_exchange_declare(c, Loop.controlChannel, arena.bytes(exchange.name), arena.bytes(exchange.kind.rawValue),
                              0, exchange.durable ? 1 : 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(c), channel: Loop.controlChannel, "declaring exchange '\(exchange.name)'")
    }

    private func declareQueue(_ queue: QueueSpec) throws -> String {
        let c = try control()
        let arena = CArena()
        let ok = amqp_queue_declare(c, Loop.controlChannel, arena.bytes(queue.name), 0, queue.durable ? 1 : 0,
                                    queue.exclusive ? 1 : 0, queue.autoDelete ? 1 : 0, arena.queueArguments(queue))
        try check(amqp_get_rpc_reply(c), channel: Loop.controlChannel, "declaring queue '\(queue.name)'")
        guard let ok else { throw TransportError(.protocolError, "queue.declare-ok without a body for '\(queue.name)'") }
        return ok.pointee.queue.swiftString
    }

    private func bindQueue(_ binding: BindingSpec) throws {
        let c = try control()
        let arena = CArena()
        amqp_queue_bind(c, Loop.controlChannel, arena.bytes(binding.queue), arena.bytes(binding.exchange),
                        arena.bytes(binding.routingKey), amqp_empty_table)
        try check(amqp_get_rpc_reply(c), channel: Loop.controlChannel,
                  "binding queue '\(binding.queue)' to exchange '\(binding.exchange)' with key '\(binding.routingKey)'")
    }

    // MARK: the loop's steps

    private func runWaitingJobs() {
        guard !waiting.isEmpty else { return }
        let batch = waiting
        waiting = []
        for var job in batch {
            if job.needsConnection && conn == nil {
                waiting.append(job)
                continue
            }
            do {
                try job.execute(self)
            } catch let lost as ConnectionLost {
                // Commands are idempotent; retry on the next connection, but not forever if
                // this very command keeps breaking connections.
                job.attempts += 1
                if job.attempts >= 3 { job.fail(lost.error) } else { waiting.append(job) }
            } catch {
                job.fail(error)
            }
            if let c = conn { amqp_maybe_release_buffers(c) }
        }
    }

    private func flushUnsent() {
        let batch = unsent
        unsent = []
        for (i, p) in batch.enumerated() {
            publish(p, flushing: true)
            if conn == nil || !publishOpen {
                unsent.append(contentsOf: batch[(i + 1)...])
                return
            }
        }
    }

    private func expireDeadlines() {
        let now = ContinuousClock.now
        let reason = conn == nil
            ? "RabbitMQ at \(url) is unreachable (last error: \(lastError.map { "\($0)" } ?? "none"))"
            : "RabbitMQ at \(url) did not answer"
        if waiting.contains(where: { $0.deadline <= now }) {
            var keep: [Job] = []
            for job in waiting {
                if job.deadline <= now {
                    job.fail(TransportError(.connectionFailed, "\(job.what) did not complete within \(configuration.operationTimeout): \(reason)"))
                } else {
                    keep.append(job)
                }
            }
            waiting = keep
        }
        func expire(_ list: inout [PendingPublish], _ what: String) {
            guard list.contains(where: { $0.deadline <= now }) else { return }
            list.removeAll { p in
                guard p.deadline <= now else { return false }
                p.continuation.resume(throwing: TransportError(.connectionFailed,
                    "publishing to exchange '\(p.exchange)' (routing key '\(p.routingKey)') was not \(what) within \(configuration.operationTimeout): \(reason)"))
                return true
            }
        }
        expire(&unsent, "sent")
        expire(&unconfirmed, "confirmed")
    }

    /// poll(2) on the wake pipe and the socket. The timeout stays short so the library is
    /// entered often (rabbitmq-c sends and checks heartbeats only inside its calls).
    private func waitForWork() {
        let now = ContinuousClock.now
        var timeout: Duration = closing ? .milliseconds(10) : .milliseconds(100)
        if conn == nil && !closing { timeout = min(timeout, max(.zero, nextAttempt - now)) }
        if let c = conn, amqp_frames_enqueued(c) != 0 || amqp_data_in_buffer(c) != 0 { timeout = .zero }
        var fds = [pollfd(fd: inbox.wakeFD, events: Int16(POLLIN), revents: 0)]
        if let c = conn {
            let fd = amqp_get_sockfd(c)
            if fd >= 0 { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        }
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        _ = poll(&fds, nfds_t(fds.count), ms)
    }

    /// Reads whatever frames are available without blocking (and services heartbeats).
    private func readFrames() {
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        var frame = amqp_frame_t()
        for _ in 0..<1024 {
            guard let c = conn else { return }
            let status = amqp_simple_wait_frame_noblock(c, &frame, &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return }
            if status != AMQP_STATUS_OK.rawValue {
                connectionLost(.library(status: status, reason: nil), while: "reading from the connection")
                return
            }
            dispatch(frame)
            if let c = conn { amqp_maybe_release_buffers(c) }
        }
    }

    private func dispatch(_ frame: amqp_frame_t) {
        let channel = frame.channel
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            handleMethod(frame.payload.method, channel: channel)
        case AMQP_FRAME_HEADER:
            guard var partial = contents[channel] else { return }
            if let decoded = frame.payload.properties.decoded {
                partial.message = decodeProperties(decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee)
            } else {
                partial.message = Message(persistent: false)
            }
            partial.expected = Int(frame.payload.properties.body_size)
            partial.body.reserveCapacity(min(partial.expected, 1 << 28))
            contents[channel] = partial
            if partial.expected == 0 { complete(channel) }
        case AMQP_FRAME_BODY:
            guard contents[channel]?.message != nil else { return }
            let fragment = frame.payload.body_fragment
            if fragment.len > 0, let bytes = fragment.bytes {
                contents[channel]!.body.append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: fragment.len))
            }
            if contents[channel]!.body.count >= contents[channel]!.expected { complete(channel) }
        default:
            break
        }
    }

    private func handleMethod(_ method: amqp_method_t, channel: UInt16) {
        switch method.id {
        case AMQP_BASIC_DELIVER_METHOD:
            let d = method.decoded!.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            contents[channel] = PartialContent(target: .delivery(
                tag: d.delivery_tag, redelivered: d.redelivered != 0,
                exchange: d.exchange.swiftString, routingKey: d.routing_key.swiftString))
        case AMQP_BASIC_RETURN_METHOD:
            contents[channel] = PartialContent(target: .returned)
        case AMQP_BASIC_ACK_METHOD where channel == Loop.publishChannel:
            let a = method.decoded!.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            confirm(a.delivery_tag, multiple: a.multiple != 0, error: nil)
        case AMQP_BASIC_NACK_METHOD where channel == Loop.publishChannel:
            let n = method.decoded!.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            confirm(n.delivery_tag, multiple: n.multiple != 0, error: TransportError(.publishRejected,
                "RabbitMQ at \(url) refused the message (basic.nack): a queue is full with overflow=reject-publish, or an internal error"))
        case AMQP_BASIC_CANCEL_METHOD:
            // The broker cancelled a consumer: its queue was deleted (or failed over).
            guard let id = subscriptionByChannel[channel], let sub = subscriptions.removeValue(forKey: id) else { return }
            closeChannel(channel, "closing a cancelled subscription")
            sub.continuation.finish(throwing: TransportError(.notFound,
                "RabbitMQ cancelled the subscription to queue '\(sub.queue)' (queue deleted?)"))
        case AMQP_CHANNEL_CLOSE_METHOD:
            let m = method.decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            let failure = AMQPFailure.channelClosed(code: m.reply_code, text: m.reply_text.swiftString)
            guard let c = conn else { return }
            var ok = amqp_channel_close_ok_t(dummy: 0)
            let status = amqp_send_method(c, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
            let action = channel == Loop.publishChannel ? "publishing" : channel == Loop.controlChannel ? "declaring" : "consuming"
            let error = transportError(failure, url: url, phase: .operation(action))
            logger.debug("RabbitMQ closed a channel", metadata: ["amqp.channel": "\(channel)", "error": "\(error)"])
            channelClosed(channel, failure: failure, error: error)
            if status != AMQP_STATUS_OK.rawValue {
                connectionLost(.library(status: status, reason: nil), while: "answering channel.close")
            }
        case AMQP_CONNECTION_CLOSE_METHOD:
            let m = method.decoded!.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            connectionLost(.connectionClosed(code: m.reply_code, text: m.reply_text.swiftString), while: "connected")
        case AMQP_CONNECTION_BLOCKED_METHOD:
            let m = method.decoded!.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            logger.warning("RabbitMQ blocked publishing (resource alarm)", metadata: ["reason": "\(m.reason.swiftString)"])
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            logger.info("RabbitMQ unblocked publishing")
        default:
            logger.debug("ignoring an AMQP method", metadata: ["amqp.method": "\(method.id)", "amqp.channel": "\(channel)"])
        }
    }

    private func confirm(_ tag: UInt64, multiple: Bool, error: TransportError?) {
        func settle(_ p: PendingPublish) {
            if let error { p.continuation.resume(throwing: error) } else { p.continuation.resume() }
        }
        if multiple {
            let n = unconfirmed.prefix(while: { $0.sequence <= tag }).count
            for p in unconfirmed[..<n] { settle(p) }
            unconfirmed.removeFirst(n)
        } else if let i = unconfirmed.firstIndex(where: { $0.sequence == tag }) {
            settle(unconfirmed.remove(at: i))
        }
    }

    private func complete(_ channel: UInt16) {
        guard let partial = contents.removeValue(forKey: channel), var message = partial.message else { return }
        guard case .delivery(let tag, let redelivered, let exchange, let routingKey) = partial.target else {
            return  // basic.return: we never publish with mandatory, nothing waits for it
        }
        guard let id = subscriptionByChannel[channel], let sub = subscriptions[id] else { return }
        message.body = partial.body
        if Trace.enabled, let job = message.headers[Trace.jobHeader]?.stringValue { Trace.mark(job, "wire.in \(exchange)") }
        sub.unsettled.insert(tag)
        let delivery = Delivery(message: message, exchange: exchange, routingKey: routingKey,
                                redelivered: redelivered, tag: DeliveryTag(generation: sub.generation, value: tag))
        if case .terminated = sub.continuation.yield(delivery) {
            cancelSubscription(id)
        }
    }

    // MARK: shutting down

    private func shutDown() {
        if let c = conn {
            var timeout = Loop.timeValue(configuration.closeTimeout)
            _ = amqp_set_rpc_timeout(c, &timeout)
            _ = amqp_connection_close(c, AMQP_REPLY_SUCCESS)
            amqp_destroy_connection(c)
            conn = nil
        }
        let closed = TransportError(.closed, "the AMQP connection to \(url) was closed")
        for sub in subscriptions.values { sub.continuation.finish() }
        subscriptions = [:]
        for p in unconfirmed + unsent {
            p.continuation.resume(throwing: TransportError(.closed,
                "the AMQP connection to \(url) was closed before RabbitMQ confirmed a message to exchange '\(p.exchange)'"))
        }
        unconfirmed = []
        unsent = []
        for job in waiting + inbox.finish() { job.fail(closed) }
        waiting = []
        exited.signal()
    }

    // MARK: helpers

    static func isConnectionLevel(_ status: Int32) -> Bool {
        ![AMQP_STATUS_INVALID_PARAMETER.rawValue, AMQP_STATUS_TABLE_TOO_BIG.rawValue,
          AMQP_STATUS_BAD_URL.rawValue, AMQP_STATUS_UNSUPPORTED.rawValue].contains(status)
    }

    static func timeValue(_ d: Duration) -> timeval {
        let (s, atto) = d.components
        return timeval(tv_sec: Int(max(0, s)), tv_usec: Int(max(0, atto / 1_000_000_000_000)))
    }
}

// MARK: - Errors: the one place where rabbitmq-c codes become TransportErrors

/// A failure as rabbitmq-c or the broker reported it, before translation.
private enum AMQPFailure {
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

private enum Phase {
    case loadingCA(String)
    case loadingClientCertificate(cert: String, key: String)
    case connect, login
    case operation(String)
}

/// Translates a failure into a `TransportError` that says what happened and what to do.
private func transportError(_ failure: AMQPFailure, url: AMQPURL, phase: Phase) -> TransportError {
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

/// Connects once more with plain sockets, only to learn why rabbitmq-c could not ("connection
/// refused", "no route to host", a timeout); nil if it now works or the name does not resolve.
private func probeTCP(host: String, port: Int, timeout: Duration) -> String? {
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
    let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
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

// MARK: - C values: copied in on the way out, copied out on the way in

/// Owns the C memory handed to one rabbitmq-c call; everything is freed when the arena goes.
/// (Never `amqp_cstring_bytes` on a Swift string: its pointer dies with the temporary.)
private final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for b in blocks { free(b) } }

    private func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        let p = malloc(max(count, 1))!
        blocks.append(p)
        return p
    }

    func bytes(_ b: [UInt8]) -> amqp_bytes_t {
        guard !b.isEmpty else { return amqp_bytes_t(len: 0, bytes: nil) }
        let p = allocate(b.count)
        b.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: b.count) }
        return amqp_bytes_t(len: b.count, bytes: p)
    }

    func bytes(_ s: String) -> amqp_bytes_t { bytes(Array(s.utf8)) }

    func table(_ entries: [(String, HeaderValue)]) -> amqp_table_t {
        guard !entries.isEmpty else { return amqp_empty_table }
        let p = allocate(MemoryLayout<amqp_table_entry_t>.stride * entries.count)
            .bindMemory(to: amqp_table_entry_t.self, capacity: entries.count)
        for (i, (key, value)) in entries.enumerated() {
            (p + i).initialize(to: amqp_table_entry_t(key: bytes(key), value: field(value)))
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: p)
    }

    func table(_ headers: [String: HeaderValue]) -> amqp_table_t {
        table(headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    /// .string → long string 'S', .bytes → byte array 'x', .int → long 'l', .double → 'd',
    /// .bool → 't', arrays 'A' and tables 'F' recursively.
    func field(_ value: HeaderValue) -> amqp_field_value_t {
        var f = amqp_field_value_t()
        switch value {
        case .string(let s):
            f.kind = kind(AMQP_FIELD_KIND_UTF8)
            f.value.bytes = bytes(s)
        case .bytes(let b):
            f.kind = kind(AMQP_FIELD_KIND_BYTES)
            f.value.bytes = bytes(b)
        case .int(let i):
            f.kind = kind(AMQP_FIELD_KIND_I64)
            f.value.i64 = i
        case .double(let d):
            f.kind = kind(AMQP_FIELD_KIND_F64)
            f.value.f64 = d
        case .bool(let b):
            f.kind = kind(AMQP_FIELD_KIND_BOOLEAN)
            f.value.boolean = b ? 1 : 0
        case .array(let items):
            f.kind = kind(AMQP_FIELD_KIND_ARRAY)
            if items.isEmpty {
                f.value.array = amqp_array_t(num_entries: 0, entries: nil)
            } else {
                let p = allocate(MemoryLayout<amqp_field_value_t>.stride * items.count)
                    .bindMemory(to: amqp_field_value_t.self, capacity: items.count)
                for (i, item) in items.enumerated() { (p + i).initialize(to: field(item)) }
                f.value.array = amqp_array_t(num_entries: Int32(items.count), entries: p)
            }
        case .table(let t):
            f.kind = kind(AMQP_FIELD_KIND_TABLE)
            f.value.table = table(t)
        }
        return f
    }

    /// x-max-priority, x-message-ttl and x-expires as 'l' (long; RabbitMQ accepts any integer
    /// kind and treats them as equivalent on re-declare); the dead-letter names as long strings.
    /// Always the same order and kinds, so every declare is identical.
    func queueArguments(_ q: QueueSpec) -> amqp_table_t {
        var entries: [(String, HeaderValue)] = []
        if let p = q.maxPriority { entries.append(("x-max-priority", .int(Int64(p)))) }
        if let ttl = q.messageTTL { entries.append(("x-message-ttl", .int(milliseconds(ttl)))) }
        if let e = q.expires { entries.append(("x-expires", .int(milliseconds(e)))) }
        if let dlx = q.deadLetterExchange { entries.append(("x-dead-letter-exchange", .string(dlx))) }
        if let dlrk = q.deadLetterRoutingKey { entries.append(("x-dead-letter-routing-key", .string(dlrk))) }
        return table(entries)
    }

    func properties(_ m: Message) -> amqp_basic_properties_t {
        var p = amqp_basic_properties_t()
        var flags: UInt32 = 0
        if let ct = m.contentType {
            flags |= UInt32(AMQP_BASIC_CONTENT_TYPE_FLAG)
            p.content_type = bytes(ct)
        }
        if !m.headers.isEmpty {
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
            p.headers = table(m.headers)
        }
        flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        p.delivery_mode = m.persistent ? 2 : 1
        if let priority = m.priority {
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
            p.priority = priority
        }
        if let e = m.expiration {
            flags |= UInt32(AMQP_BASIC_EXPIRATION_FLAG)
            p.expiration = bytes(String(milliseconds(e)))
        }
        if let id = m.messageID {
            flags |= UInt32(AMQP_BASIC_MESSAGE_ID_FLAG)
            p.message_id = bytes(id)
        }
        p._flags = flags
        return p
    }

    private func kind(_ k: amqp_field_value_kind_t) -> UInt8 { UInt8(k.rawValue) }
}

/// Whole milliseconds, rounded up (a TTL is never shortened), at least 0.
private func milliseconds(_ d: Duration) -> Int64 {
    let (s, atto) = d.components
    guard s >= 0, !(s == 0 && atto <= 0) else { return 0 }
    let perMs: Int64 = 1_000_000_000_000_000
    return s * 1000 + atto / perMs + (atto % perMs > 0 ? 1 : 0)
}

private func decodeProperties(_ p: amqp_basic_properties_t) -> Message {
    let flags = p._flags
    func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
    var m = Message(persistent: false)
    if has(AMQP_BASIC_CONTENT_TYPE_FLAG) { m.contentType = p.content_type.swiftString }
    if has(AMQP_BASIC_HEADERS_FLAG) { m.headers = decodeHeaders(p.headers) }
    if has(AMQP_BASIC_DELIVERY_MODE_FLAG) { m.persistent = p.delivery_mode == 2 }
    if has(AMQP_BASIC_PRIORITY_FLAG) { m.priority = p.priority }
    if has(AMQP_BASIC_EXPIRATION_FLAG), let ms = Int64(p.expiration.swiftString) { m.expiration = .milliseconds(ms) }
    if has(AMQP_BASIC_MESSAGE_ID_FLAG) { m.messageID = p.message_id.swiftString }
    return m
}

/// Budget and verdict of one message's header decode (`HeaderBounds`), applied while the C
/// tables are taken apart so nothing beyond the bounds is ever recursed into.
private struct HeaderDecoding {
    var budget = HeaderBounds.maxEntries
    var fault: String?
}

private func decodeTable(_ t: amqp_table_t, depth: Int, state: inout HeaderDecoding) -> [String: HeaderValue] {
    var out: [String: HeaderValue] = [:]
    guard t.num_entries > 0, let entries = t.entries else { return out }
    for i in 0..<Int(t.num_entries) {
        guard state.budget > 0 else {
            state.fault = HeaderBounds.tooMany
            break
        }
        state.budget -= 1
        let e = entries[i]
        if let v = decodeField(e.value, depth: depth, state: &state) { out[e.key.swiftString] = v }
    }
    return out
}

private func decodeHeaders(_ t: amqp_table_t) -> [String: HeaderValue] {
    var state = HeaderDecoding()
    var headers = decodeTable(t, depth: 0, state: &state)
    if let fault = state.fault { headers[HeaderBounds.malformedHeader] = .string(fault) }
    return headers
}

/// Other integer kinds (and timestamps) read as .int, floats and decimals as .double, void is
/// dropped, anything unknown becomes a descriptive .string.
private func decodeField(_ f: amqp_field_value_t, depth: Int, state: inout HeaderDecoding) -> HeaderValue? {
    let v = f.value
    switch amqp_field_value_kind_t(rawValue: UInt32(f.kind)) {
    case AMQP_FIELD_KIND_BOOLEAN: return .bool(v.boolean != 0)
    case AMQP_FIELD_KIND_I8: return .int(Int64(v.i8))
    case AMQP_FIELD_KIND_U8: return .int(Int64(v.u8))
    case AMQP_FIELD_KIND_I16: return .int(Int64(v.i16))
    case AMQP_FIELD_KIND_U16: return .int(Int64(v.u16))
    case AMQP_FIELD_KIND_I32: return .int(Int64(v.i32))
    case AMQP_FIELD_KIND_U32: return .int(Int64(v.u32))
    case AMQP_FIELD_KIND_I64: return .int(v.i64)
    case AMQP_FIELD_KIND_U64, AMQP_FIELD_KIND_TIMESTAMP:
        return Int64(exactly: v.u64).map { .int($0) } ?? .string(String(v.u64))
    case AMQP_FIELD_KIND_F32: return .double(Double(v.f32))
    case AMQP_FIELD_KIND_F64: return .double(v.f64)
    case AMQP_FIELD_KIND_DECIMAL:
        var scale = 1.0
        for _ in 0..<Int(v.decimal.decimals) { scale *= 10 }
        return .double(Double(v.decimal.value) / scale)
    case AMQP_FIELD_KIND_UTF8:
        let b = v.bytes.swiftBytes
        return String(validating: b, as: UTF8.self).map { .string($0) } ?? .bytes(b)
    case AMQP_FIELD_KIND_BYTES: return .bytes(v.bytes.swiftBytes)
    case AMQP_FIELD_KIND_ARRAY:
        guard depth < HeaderBounds.maxDepth else { return tooDeep(&state) }
        guard v.array.num_entries > 0, let entries = v.array.entries else { return .array([]) }
        var out: [HeaderValue] = []
        for i in 0..<Int(v.array.num_entries) {
            guard state.budget > 0 else {
                state.fault = HeaderBounds.tooMany
                break
            }
            state.budget -= 1
            if let e = decodeField(entries[i], depth: depth + 1, state: &state) { out.append(e) }
        }
        return .array(out)
    case AMQP_FIELD_KIND_TABLE:
        guard depth < HeaderBounds.maxDepth else { return tooDeep(&state) }
        return .table(decodeTable(v.table, depth: depth + 1, state: &state))
    case AMQP_FIELD_KIND_VOID: return nil
    default: return .string("<AMQP field kind '\(Character(Unicode.Scalar(f.kind)))'>")
    }
}

/// A value nested beyond `HeaderBounds.maxDepth` is dropped and the message marked malformed.
private func tooDeep(_ state: inout HeaderDecoding) -> HeaderValue? {
    state.fault = HeaderBounds.tooDeep
    return nil
}

extension amqp_bytes_t {
    /// A copy: the C buffer usually lives in a pool that is released soon after.
    fileprivate var swiftBytes: [UInt8] {
        guard len > 0, let bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: len))
    }

    fileprivate var swiftString: String { String(decoding: swiftBytes, as: UTF8.self) }
}
