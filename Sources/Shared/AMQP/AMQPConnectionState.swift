// The bookkeeping of one AMQP connection as a value: channels, unsent and unconfirmed
// publishes, subscriptions and their generations, waiting commands, the reconnect policy.
// No C, no I/O, no clock reads: the connection's thread (AMQPConnectionLoop) feeds it events
// and the current time and performs the actions it returns, so it is tested without a broker.
import SRTransport

/// Pure connection state. `Publish` is what completes one publish (a continuation in the
/// thread, a number in tests); `Command` is a queued command awaiting a connection.
package struct AMQPConnectionState<Publish, Command> {
    /// Timeouts and reconnect delays, from `AMQPTransport.Configuration`.
    package struct Policy: Sendable {
        package var operationTimeout: Duration
        package var closeTimeout: Duration
        package var minimumReconnectDelay: Duration
        package var maximumReconnectDelay: Duration

        package init(operationTimeout: Duration, closeTimeout: Duration,
                     minimumReconnectDelay: Duration, maximumReconnectDelay: Duration) {
            self.operationTimeout = operationTimeout
            self.closeTimeout = closeTimeout
            self.minimumReconnectDelay = minimumReconnectDelay
            self.maximumReconnectDelay = maximumReconnectDelay
        }
    }

    /// A message on its way: parked in `unsent`, or sent and awaiting its confirm in `unconfirmed`.
    package struct PendingPublish {
        package let message: Message
        package let exchange: String
        package let routingKey: String
        package let deadline: ContinuousClock.Instant
        package let completion: Publish
        /// The publisher-confirm sequence number once sent on the current publishing channel.
        package var sequence: UInt64 = 0

        package init(message: Message, exchange: String, routingKey: String,
                     deadline: ContinuousClock.Instant, completion: Publish) {
            self.message = message
            self.exchange = exchange
            self.routingKey = routingKey
            self.deadline = deadline
            self.completion = completion
        }
    }

    /// A command waiting for the thread (or for a connection).
    package struct PendingCommand {
        package let what: String
        /// False for commands that cope with a missing connection themselves (publish, ack, cancel).
        package let needsConnection: Bool
        package let deadline: ContinuousClock.Instant
        package var attempts = 0
        package let command: Command

        package init(what: String, needsConnection: Bool, deadline: ContinuousClock.Instant, command: Command) {
            self.what = what
            self.needsConnection = needsConnection
            self.deadline = deadline
            self.command = command
        }
    }

    /// A subscription as the connection sees it; its stream lives with the thread.
    package struct SubscriptionRecord {
        package let id: UInt64
        package let queue: String
        package let prefetch: Int
        /// The channel of the current incarnation; nil while disconnected.
        package var channel: UInt16?
        /// Unique per incarnation (subscription × connection): older tags are stale.
        package var generation: UInt64 = 0
        /// Delivered, not yet acked or rejected, in this incarnation; settling anything else is a
        /// no-op (a second ack of one tag would otherwise make the broker close the channel).
        package var unsettled = Set<UInt64>()
    }

    /// What the thread must do. Actions are returned in the order they must happen.
    package enum Action {
        /// Complete a publish: confirmed (nil) or failed.
        case completePublish(Publish, TransportError?)
        /// Fail a command that will not run.
        case failCommand(Command, TransportError)
        /// Finish a subscription's stream, normally (nil) or with an error.
        case finishSubscription(UInt64, TransportError?)
        /// Close a channel we opened (client-initiated); `reason` names the action for errors.
        case closeChannel(UInt16, reason: String)
    }

    package static var controlChannel: UInt16 { 1 }
    package static var publishChannel: UInt16 { 2 }
    package static var firstSubscriptionChannel: UInt16 { 3 }

    /// The URL as printed in messages (never with the password).
    package let endpoint: String
    package let policy: Policy

    package private(set) var controlOpen = false
    package private(set) var publishOpen = false
    package private(set) var usedChannels = Set<UInt16>()
    package private(set) var nextSequence: UInt64 = 1
    /// Sent on the current connection, awaiting basic.ack/nack; ascending sequence numbers.
    package private(set) var unconfirmed: [PendingPublish] = []
    /// Waiting for a connection (or a re-opened publishing channel); in publish order.
    package private(set) var unsent: [PendingPublish] = []
    package private(set) var waiting: [PendingCommand] = []

    package private(set) var subscriptions: [UInt64: SubscriptionRecord] = [:]
    package private(set) var subscriptionByChannel: [UInt16: UInt64] = [:]
    package private(set) var exclusiveQueues = Set<String>()
    private var generations: UInt64 = 0

    package private(set) var lastError: TransportError?
    package private(set) var reconnectDelay: Duration
    package private(set) var nextAttempt: ContinuousClock.Instant
    package private(set) var failedAttempts = 0
    package private(set) var lostAt: ContinuousClock.Instant
    package private(set) var closing = false
    package private(set) var closeDeadline: ContinuousClock.Instant

    package init(endpoint: String, policy: Policy, now: ContinuousClock.Instant) {
        self.endpoint = endpoint
        self.policy = policy
        reconnectDelay = policy.minimumReconnectDelay
        nextAttempt = now
        lostAt = now
        closeDeadline = now
    }

    // MARK: commands

    package mutating func receive(_ commands: [PendingCommand]) { waiting.append(contentsOf: commands) }

    /// Takes every waiting command; the thread runs them one by one, handing back with
    /// `requeue` those that must wait for a connection.
    package mutating func takeWaiting() -> [PendingCommand] {
        defer { waiting = [] }
        return waiting
    }

    package mutating func requeue(_ command: PendingCommand) { waiting.append(command) }

    /// A command broke (or found broken) the connection. Commands are idempotent: retry it on
    /// the next connection, but not forever if this very command keeps breaking connections.
    package mutating func commandLostConnection(_ command: PendingCommand, error: TransportError) -> [Action] {
        var command = command
        command.attempts += 1
        if command.attempts >= 3 { return [.failCommand(command.command, error)] }
        waiting.append(command)
        return []
    }

    // MARK: publishing

    /// True when a publish must wait in `unsent`: no connection, or older messages wait to be
    /// re-sent first (to keep the order). `flushing` is true while re-sending those.
    package func mustPark(connected: Bool, flushing: Bool) -> Bool {
        !connected || (!flushing && !unsent.isEmpty)
    }

    package mutating func park(_ p: PendingPublish) { unsent.append(p) }

    /// Takes the parked messages for re-sending, oldest first.
    package mutating func takeUnsent() -> [PendingPublish] {
        defer { unsent = [] }
        return unsent
    }

    /// Parks messages at the end of `unsent` (the rest of a flush that stopped).
    package mutating func park<S: Sequence>(contentsOf rest: S) where S.Element == PendingPublish {
        unsent.append(contentsOf: rest)
    }

    /// The publishing channel is open in confirm mode: sequence numbers restart at 1.
    package mutating func publishChannelOpened() {
        publishOpen = true
        nextSequence = 1
    }

    /// The broker took the message: it now awaits its confirm under the next sequence number.
    package mutating func sent(_ p: PendingPublish) {
        var sent = p
        sent.sequence = nextSequence
        nextSequence += 1
        unconfirmed.append(sent)
    }

    /// basic.ack (error nil) or basic.nack (a `publishRejected` error) on the publishing channel;
    /// `multiple` settles every sequence number up to `tag`.
    package mutating func confirm(_ tag: UInt64, multiple: Bool, error: TransportError?) -> [Action] {
        if multiple {
            let n = unconfirmed.prefix(while: { $0.sequence <= tag }).count
            let settled = unconfirmed[..<n].map { Action.completePublish($0.completion, error) }
            unconfirmed.removeFirst(n)
            return settled
        }
        guard let i = unconfirmed.firstIndex(where: { $0.sequence == tag }) else { return [] }
        return [.completePublish(unconfirmed.remove(at: i).completion, error)]
    }

    /// The error of a basic.nack.
    package var rejectedError: TransportError {
        TransportError(.publishRejected,
                       "RabbitMQ at \(endpoint) refused the message (basic.nack): a queue is full with overflow=reject-publish, or an internal error")
    }

    // MARK: channels

    package mutating func controlChannelOpened() { controlOpen = true }

    /// The lowest free subscription channel below `limit` (the negotiated channel-max).
    package mutating func allocateChannel(limit: UInt16) throws(TransportError) -> UInt16 {
        var candidate = Self.firstSubscriptionChannel
        while usedChannels.contains(candidate) {
            guard candidate < limit else {
                throw TransportError(.protocolError, "no free AMQP channel for another subscription (limit \(limit))")
            }
            candidate += 1
        }
        usedChannels.insert(candidate)
        return candidate
    }

    /// We are closing `channel`; `sent` says whether channel.close went out on a connection.
    package mutating func closingChannel(_ channel: UInt16, sent: Bool) {
        subscriptionByChannel[channel] = nil
        if sent { usedChannels.remove(channel) }
    }

    /// The broker closed `channel` (an error on it) and we answered close-ok. Whatever used the
    /// channel learns `error`. On the publishing channel, a 404 naming an exchange fails the
    /// publishes to that exchange and the rest are sent again on a new channel; any other
    /// close fails every unconfirmed publish.
    package mutating func channelClosedByBroker(_ channel: UInt16, replyCode: UInt16, replyText: String,
                                                error: TransportError) -> [Action] {
        usedChannels.remove(channel)
        switch channel {
        case Self.controlChannel:
            controlOpen = false
            return []
        case Self.publishChannel:
            publishOpen = false
            var culprits: [PendingPublish] = []
            var innocent: [PendingPublish] = []
            for p in unconfirmed {
                if replyCode == 404, replyText.contains("'\(p.exchange)'") { culprits.append(p) } else { innocent.append(p) }
            }
            if culprits.isEmpty && !innocent.isEmpty {
                culprits = innocent
                innocent = []
            }
            unconfirmed = []
            unsent = innocent + unsent
            return culprits.map { .completePublish($0.completion, error) }
        default:
            guard let id = subscriptionByChannel.removeValue(forKey: channel),
                  subscriptions.removeValue(forKey: id) != nil else { return [] }
            return [.finishSubscription(id, error)]
        }
    }

    // MARK: subscriptions and topology

    package mutating func declaredExclusive(_ queue: String) { exclusiveQueues.insert(queue) }

    package func isExclusive(_ queue: String) -> Bool { exclusiveQueues.contains(queue) }

    /// Consuming on `channel` started: a new incarnation with a new generation. Adds the
    /// subscription if it is new.
    package mutating func consuming(id: UInt64, queue: String, prefetch: Int, channel: UInt16) {
        generations += 1
        var record = subscriptions[id] ?? SubscriptionRecord(id: id, queue: queue, prefetch: prefetch)
        record.generation = generations
        record.channel = channel
        record.unsettled = []
        subscriptions[id] = record
        subscriptionByChannel[channel] = id
    }

    /// Subscriptions to re-establish after a reconnect, oldest first.
    package var subscriptionsToRestore: [SubscriptionRecord] {
        subscriptions.values.sorted { $0.id < $1.id }
    }

    /// Re-subscribing failed for a reason other than a lost connection: the subscriber learns it.
    package mutating func restoreFailed(_ id: UInt64, error: TransportError) -> [Action] {
        guard subscriptions.removeValue(forKey: id) != nil else { return [] }
        return [.finishSubscription(id, error)]
    }

    /// A delivery completed on `channel`: the subscription it goes to and its tag, or nil when
    /// no subscription consumes there any more.
    package mutating func delivered(_ tag: UInt64, channel: UInt16) -> (subscription: UInt64, tag: DeliveryTag)? {
        guard let id = subscriptionByChannel[channel], subscriptions[id] != nil else { return nil }
        subscriptions[id]!.unsettled.insert(tag)
        return (id, DeliveryTag(generation: subscriptions[id]!.generation, value: tag))
    }

    /// The channel on which to ack or reject `tag`, or nil when there is nothing to do: the
    /// subscription is cancelled, re-subscribed since (an older generation), disconnected, or
    /// the tag was settled already. The broker has then requeued (or will redeliver) it.
    package mutating func settle(_ id: UInt64, _ tag: DeliveryTag) -> UInt16? {
        guard let sub = subscriptions[id], sub.generation == tag.generation, let channel = sub.channel,
              subscriptions[id]!.unsettled.remove(tag.value) != nil else { return nil }
        return channel
    }

    /// The subscriber cancelled: close its channel (which requeues its unacked deliveries) and
    /// finish its stream.
    package mutating func cancel(_ id: UInt64) -> [Action] {
        guard let sub = subscriptions.removeValue(forKey: id) else { return [] }
        var actions: [Action] = []
        if let channel = sub.channel {
            actions.append(.closeChannel(channel, reason: "cancelling the subscription to queue '\(sub.queue)'"))
        }
        actions.append(.finishSubscription(id, nil))
        return actions
    }

    /// basic.cancel from the broker: the queue was deleted (or failed over).
    package mutating func cancelledByBroker(channel: UInt16) -> [Action] {
        guard let id = subscriptionByChannel[channel], let sub = subscriptions.removeValue(forKey: id) else { return [] }
        return [.closeChannel(channel, reason: "closing a cancelled subscription"),
                .finishSubscription(id, TransportError(.notFound,
                    "RabbitMQ cancelled the subscription to queue '\(sub.queue)' (queue deleted?)"))]
    }

    // MARK: the connection's life

    /// The connection is gone: forget its channels, keep unconfirmed messages (ahead of the
    /// unsent ones) to publish again on the next connection. Subscriptions wait to be restored,
    /// except those to exclusive queues, which died with the connection.
    package mutating func connectionLost() -> [Action] {
        controlOpen = false
        publishOpen = false
        usedChannels = []
        subscriptionByChannel = [:]
        unsent = unconfirmed + unsent
        unconfirmed = []
        for id in subscriptions.keys {
            subscriptions[id]!.channel = nil
            subscriptions[id]!.unsettled = []
        }
        // Messages routed to an exclusive queue meanwhile are lost: its subscribers learn it
        // instead of silently resuming on a new queue.
        var actions: [Action] = []
        for (id, sub) in subscriptions.sorted(by: { $0.key < $1.key }) where exclusiveQueues.contains(sub.queue) {
            subscriptions[id] = nil
            actions.append(.finishSubscription(id, TransportError(.closed,
                "exclusive queue '\(sub.queue)' was deleted when the connection to \(endpoint) dropped; messages routed to it meanwhile are lost — declare a new queue and subscribe again")))
        }
        exclusiveQueues = []
        return actions
    }

    /// Records why the connection is unusable (the next "unreachable" message quotes it).
    package mutating func recordError(_ error: TransportError) { lastError = error }

    /// The connection dropped while it was up (not during a reconnect attempt).
    package mutating func markLost(at now: ContinuousClock.Instant) { lostAt = now }

    /// Next reconnect attempt after the current delay, scaled by `jitter` (0.5...1 in the thread)
    /// so that many clients do not reconnect in lockstep.
    package mutating func scheduleAttempt(now: ContinuousClock.Instant, jitter: Double) {
        nextAttempt = now + reconnectDelay * jitter
    }

    package func shouldReconnect(connected: Bool, now: ContinuousClock.Instant) -> Bool {
        !connected && !closing && now >= nextAttempt
    }

    /// A reconnect attempt failed: the delay doubles up to the maximum.
    package mutating func reconnectFailed(_ error: TransportError, now: ContinuousClock.Instant, jitter: Double) {
        lastError = error
        failedAttempts += 1
        reconnectDelay = min(reconnectDelay * 2, policy.maximumReconnectDelay)
        scheduleAttempt(now: now, jitter: jitter)
    }

    /// Reconnected and restored: returns the attempts it took and how long the connection was down.
    package mutating func reconnected(now: ContinuousClock.Instant) -> (attempts: Int, downtime: Duration) {
        defer {
            failedAttempts = 0
            reconnectDelay = policy.minimumReconnectDelay
        }
        return (failedAttempts + 1, now - lostAt)
    }

    /// close() was called: outstanding confirms get up to `closeTimeout`.
    package mutating func requestClose(now: ContinuousClock.Instant) {
        guard !closing else { return }
        closing = true
        closeDeadline = now + policy.closeTimeout
    }

    /// The thread may stop: closing, and disconnected, settled, or out of time.
    package func shouldStop(connected: Bool, now: ContinuousClock.Instant) -> Bool {
        closing && (!connected || (unconfirmed.isEmpty && unsent.isEmpty) || now >= closeDeadline)
    }

    /// How long the thread may sleep in poll(2). Short, so rabbitmq-c (which sends and checks
    /// heartbeats only inside its calls) is entered often; shorter while closing; never past
    /// the next reconnect attempt.
    package func pollTimeout(connected: Bool, now: ContinuousClock.Instant) -> Duration {
        var timeout: Duration = closing ? .milliseconds(10) : .milliseconds(100)
        if !connected && !closing { timeout = min(timeout, max(.zero, nextAttempt - now)) }
        return timeout
    }

    /// Fails the commands and publishes whose deadline has passed.
    package mutating func expire(now: ContinuousClock.Instant, connected: Bool) -> [Action] {
        let reason = connected
            ? "RabbitMQ at \(endpoint) did not answer"
            : "RabbitMQ at \(endpoint) is unreachable (last error: \(lastError.map { "\($0)" } ?? "none"))"
        var actions: [Action] = []
        if waiting.contains(where: { $0.deadline <= now }) {
            var keep: [PendingCommand] = []
            for command in waiting {
                if command.deadline <= now {
                    actions.append(.failCommand(command.command, TransportError(.connectionFailed,
                        "\(command.what) did not complete within \(policy.operationTimeout): \(reason)")))
                } else {
                    keep.append(command)
                }
            }
            waiting = keep
        }
        let timeout = policy.operationTimeout
        func expire(_ list: inout [PendingPublish], _ what: String) {
            guard list.contains(where: { $0.deadline <= now }) else { return }
            list.removeAll { p in
                guard p.deadline <= now else { return false }
                actions.append(.completePublish(p.completion, TransportError(.connectionFailed,
                    "publishing to exchange '\(p.exchange)' (routing key '\(p.routingKey)') was not \(what) within \(timeout): \(reason)")))
                return true
            }
        }
        expire(&unsent, "sent")
        expire(&unconfirmed, "confirmed")
        return actions
    }

    /// The thread stops: every stream finishes, every publish and command fails.
    package mutating func shutDown() -> [Action] {
        var actions: [Action] = subscriptions.keys.sorted().map { .finishSubscription($0, nil) }
        subscriptions = [:]
        subscriptionByChannel = [:]
        for p in unconfirmed + unsent {
            actions.append(.completePublish(p.completion, TransportError(.closed,
                "the AMQP connection to \(endpoint) was closed before RabbitMQ confirmed a message to exchange '\(p.exchange)'")))
        }
        unconfirmed = []
        unsent = []
        let closed = TransportError(.closed, "the AMQP connection to \(endpoint) was closed")
        actions += waiting.map { .failCommand($0.command, closed) }
        waiting = []
        return actions
    }
}

extension AMQPConnectionState: Sendable where Publish: Sendable, Command: Sendable {}
extension AMQPConnectionState.PendingPublish: Sendable where Publish: Sendable {}
extension AMQPConnectionState.PendingCommand: Sendable where Command: Sendable {}
extension AMQPConnectionState.SubscriptionRecord: Sendable {}
extension AMQPConnectionState.Action: Sendable where Publish: Sendable, Command: Sendable {}
