// The connection's thread: owns the rabbitmq-c connection, runs commands, reads frames and
// performs the actions of AMQPConnectionState, which holds the bookkeeping.
//
// Why a frame loop of our own instead of amqp_consume_message: it never blocks on one kind of
// frame, so confirms, deliveries, channel closes and heartbeats are all handled as they come,
// and many publishes can await their confirms at once (pipelining) without stalling the thread.
internal import CSRRabbitMQ
import SRCore
import Foundation
import SRTransport
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Everything here runs on the connection's own thread (hence `@unchecked Sendable`): the
/// rabbitmq-c state is not thread safe and its calls block.
final class Loop: @unchecked Sendable {
    let url: AMQPURL
    let configuration: AMQPTransport.Configuration
    let topology: TopologyRecord
    let inbox: Inbox
    let exited: ExitSignal
    let logger: Logger
    let reconnections = Atomic<Int>(0)

    static let controlChannel = ConnectionState.controlChannel
    static let publishChannel = ConnectionState.publishChannel

    var conn: amqp_connection_state_t?
    /// Channels, publishes, subscriptions, commands and the reconnect policy.
    var state: ConnectionState
    /// The streams of the subscriptions in `state`, by subscription id.
    var streams: [UInt64: AsyncThrowingStream<Delivery, any Error>.Continuation] = [:]
    var contents: [UInt16: PartialContent] = [:]
    private var reconnecting = false

    init(url: AMQPURL, configuration: AMQPTransport.Configuration, topology: TopologyRecord,
         inbox: Inbox, exited: ExitSignal, logger: Logger) {
        self.url = url
        self.configuration = configuration
        self.topology = topology
        self.inbox = inbox
        self.exited = exited
        self.logger = logger
        state = ConnectionState(
            endpoint: "\(url)",
            policy: .init(operationTimeout: configuration.operationTimeout, closeTimeout: configuration.closeTimeout,
                          minimumReconnectDelay: configuration.minimumReconnectDelay,
                          maximumReconnectDelay: configuration.maximumReconnectDelay),
            now: .now)
    }

    /// Performs what the state asks for, in order.
    func perform(_ actions: [ConnectionState.Action]) {
        for action in actions {
            switch action {
            case .completePublish(let completion, let error):
                if let error { completion.resume(throwing: error) } else { completion.resume() }
            case .failCommand(let job, let error):
                job.fail(error)
            case .finishSubscription(let id, let error):
                let stream = streams.removeValue(forKey: id)
                if let error { stream?.finish(throwing: error) } else { stream?.finish() }
            case .closeChannel(let channel, let reason):
                closeChannel(channel, reason)
            }
        }
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
            state.receive(jobs)
            if closeRequested { state.requestClose(now: .now) }
            runWaitingJobs()
            if conn != nil && !state.unsent.isEmpty { flushUnsent() }
            if state.shouldReconnect(connected: conn != nil, now: .now) { reconnect() }
            perform(state.expire(now: .now, connected: conn != nil))
            if state.shouldStop(connected: conn != nil, now: .now) { break }
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
            state.declaredExclusive(name)
        } else if !queue.name.isEmpty {
            // Server-named queues cannot be re-declared by name (amq.* is reserved).
            topology.record(queue)
        }
        return name
    }

    func bind(_ binding: BindingSpec) throws {
        try bindQueue(binding)
        if !state.isExclusive(binding.queue) { topology.record(binding) }
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
        guard let c = conn, !state.mustPark(connected: true, flushing: flushing) else {
            state.park(pending)
            return
        }
        do {
            try ensurePublishChannel()
        } catch is ConnectionLost {
            state.park(pending)
            return
        } catch {
            pending.completion.resume(throwing: error)
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
            state.sent(pending)
        } else if Loop.isConnectionLevel(status) {
            state.park(pending)
            connectionLost(.library(status: status, reason: nil), while: "publishing to exchange '\(pending.exchange)'")
        } else {
            pending.completion.resume(throwing: transportError(
                .library(status: status, reason: nil), url: url, phase: .operation("publishing to exchange '\(pending.exchange)'")))
        }
    }

    func subscribe(_ subscriber: Subscriber) throws {
        try startConsuming(id: subscriber.id, queue: subscriber.queue, prefetch: subscriber.prefetch)
        streams[subscriber.id] = subscriber.continuation
    }

    func settle(_ id: UInt64, _ tag: DeliveryTag, _ how: Settlement) {
        guard let c = conn, let channel = state.settle(id, tag) else { return }
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
        perform(state.cancel(id))
    }

    // MARK: connecting

    private func reconnect() {
        reconnecting = true
        defer { reconnecting = false }
        do {
            try connect()
            try restore()
            let (attempts, downtime) = state.reconnected(now: .now)
            reconnections.add(1, ordering: .relaxed)
            logger.info("reconnected to RabbitMQ", metadata: [
                "amqp.url": "\(url)", "amqp.attempts": "\(attempts)",
                "amqp.downtime_ms": "\(downtime.wholeMilliseconds)",
            ])
        } catch {
            if let c = conn {
                amqp_destroy_connection(c)
                conn = nil
                resetChannels()
            }
            let error = (error as? ConnectionLost)?.error ?? (error as? TransportError)
                ?? TransportError(.connectionFailed, "\(error)")
            state.reconnectFailed(error, now: .now, jitter: Double.random(in: 0.5...1.0))
            logger.warning("cannot reconnect to RabbitMQ yet", metadata: [
                "amqp.url": "\(url)", "amqp.attempt": "\(state.failedAttempts)", "error": "\(error)",
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
        for sub in state.subscriptionsToRestore {
            do {
                try startConsuming(id: sub.id, queue: sub.queue, prefetch: sub.prefetch)
            } catch let lost as ConnectionLost {
                throw lost
            } catch {
                perform(state.restoreFailed(sub.id, error: error as? TransportError ?? TransportError(.protocolError, "\(error)")))
            }
        }
        flushUnsent()
        if conn == nil { throw ConnectionLost(error: state.lastError ?? TransportError(.connectionFailed, "connection lost while restoring")) }
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

    /// The connection is gone: forget its channels, keep unconfirmed messages for the next one.
    func connectionLost(_ failure: AMQPFailure, while action: String) {
        guard let c = conn else { return }
        let error = transportError(failure, url: url, phase: .operation(action))
        state.recordError(error)
        if case .connectionClosed = failure {
            var ok = amqp_connection_close_ok_t(dummy: 0)
            _ = amqp_send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
        }
        amqp_destroy_connection(c)
        conn = nil
        resetChannels()
        state.scheduleAttempt(now: .now, jitter: Double.random(in: 0.5...1.0))
        if !state.closing && !reconnecting {
            state.markLost(at: .now)
            logger.warning("lost the connection to RabbitMQ; reconnecting", metadata: [
                "amqp.url": "\(url)", "error": "\(error)",
                "amqp.unconfirmed": "\(state.unsent.count)", "amqp.subscriptions": "\(state.subscriptions.count)",
            ])
        }
    }

    func resetChannels() {
        contents = [:]
        perform(state.connectionLost())
    }

    // MARK: channels

    private func control() throws -> amqp_connection_state_t {
        guard let c = conn else {
            throw ConnectionLost(error: state.lastError ?? TransportError(.connectionFailed, "not connected to \(url)"))
        }
        if !state.controlOpen {
            amqp_channel_open(c, Loop.controlChannel)
            try check(amqp_get_rpc_reply(c), channel: Loop.controlChannel, "opening a channel")
            state.controlChannelOpened()
        }
        return c
    }

    private func ensurePublishChannel() throws {
        guard let c = conn else {
            throw ConnectionLost(error: state.lastError ?? TransportError(.connectionFailed, "not connected to \(url)"))
        }
        guard !state.publishOpen else { return }
        amqp_channel_open(c, Loop.publishChannel)
        try check(amqp_get_rpc_reply(c), channel: Loop.publishChannel, "opening the publishing channel")
        amqp_confirm_select(c, Loop.publishChannel)
        try check(amqp_get_rpc_reply(c), channel: Loop.publishChannel, "enabling publisher confirms")
        state.publishChannelOpened()
    }

    private func allocateChannel() throws -> UInt16 {
        let maxChannel = conn.map { Int(amqp_get_channel_max($0)) } ?? 0
        return try state.allocateChannel(limit: UInt16(clamping: maxChannel == 0 ? 2047 : maxChannel))
    }

    private func startConsuming(id: UInt64, queue: String, prefetch: Int) throws {
        guard let c = conn else {
            throw ConnectionLost(error: state.lastError ?? TransportError(.connectionFailed, "not connected to \(url)"))
        }
        let channel = try allocateChannel()
        let action = "subscribing to queue '\(queue)'"
        amqp_channel_open(c, channel)
        try check(amqp_get_rpc_reply(c), channel: channel, action)
        amqp_basic_qos(c, channel, 0, UInt16(clamping: prefetch), 0)
        try check(amqp_get_rpc_reply(c), channel: channel, action)
        let arena = CArena()
        amqp_basic_consume(c, channel, arena.bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(c), channel: channel, action)
        state.consuming(id: id, queue: queue, prefetch: prefetch, channel: channel)
    }

    /// A client-initiated channel close; errors only matter if they take the connection down.
    func closeChannel(_ channel: UInt16, _ action: String) {
        contents[channel] = nil
        guard let c = conn else {
            state.closingChannel(channel, sent: false)
            return
        }
        let reply = amqp_channel_close(c, channel, AMQP_REPLY_SUCCESS)
        state.closingChannel(channel, sent: true)
        if let failure = AMQPFailure(reply), failure.isConnectionLevel {
            connectionLost(failure, while: action)
        }
    }

    /// The broker closed `channel` (an error on it); we have sent close-ok. Whatever used the
    /// channel learns `error`.
    func channelClosed(_ channel: UInt16, failure: AMQPFailure, error: TransportError) {
        contents[channel] = nil
        perform(state.channelClosedByBroker(channel, replyCode: failure.replyCode, replyText: failure.replyText, error: error))
    }

    /// Checks an RPC reply. A channel error closes that channel (we answer close-ok) and throws
    /// its `TransportError`; a connection error throws `ConnectionLost`.
    func check(_ reply: amqp_rpc_reply_t, channel: UInt16, _ action: String) throws {
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
        for job in state.takeWaiting() {
            if job.needsConnection && conn == nil {
                state.requeue(job)
                continue
            }
            do {
                try job.command.execute(self)
            } catch let lost as ConnectionLost {
                perform(state.commandLostConnection(job, error: lost.error))
            } catch {
                job.command.fail(error)
            }
            if let c = conn { amqp_maybe_release_buffers(c) }
        }
    }

    private func flushUnsent() {
        let batch = state.takeUnsent()
        for (i, p) in batch.enumerated() {
            publish(p, flushing: true)
            if conn == nil || !state.publishOpen {
                state.park(contentsOf: batch[(i + 1)...])
                return
            }
        }
    }

    /// poll(2) on the wake pipe and the socket. The timeout stays short so the library is
    /// entered often (rabbitmq-c sends and checks heartbeats only inside its calls).
    private func waitForWork() {
        var timeout = state.pollTimeout(connected: conn != nil, now: .now)
        if let c = conn, amqp_frames_enqueued(c) != 0 || amqp_data_in_buffer(c) != 0 { timeout = .zero }
        var fds = [pollfd(fd: inbox.wakeFD, events: Int16(POLLIN), revents: 0)]
        if let c = conn {
            let fd = amqp_get_sockfd(c)
            if fd >= 0 { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        }
        let ms = Int32(clamping: timeout.wholeMilliseconds)
        _ = poll(&fds, nfds_t(fds.count), ms)
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
        perform(state.shutDown())
        let closed = TransportError(.closed, "the AMQP connection to \(url) was closed")
        for job in inbox.finish() { job.command.fail(closed) }
        exited.signal()
    }

    // MARK: helpers

    static func isConnectionLevel(_ status: Int32) -> Bool {
        ![AMQP_STATUS_INVALID_PARAMETER.rawValue, AMQP_STATUS_TABLE_TOO_BIG.rawValue,
          AMQP_STATUS_BAD_URL.rawValue, AMQP_STATUS_UNSUPPORTED.rawValue].contains(status)
    }
}
