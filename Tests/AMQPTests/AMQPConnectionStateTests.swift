// The AMQP connection's bookkeeping (AMQPConnectionState) driven by events, without a broker,
// a thread or a clock: publishes are numbered, commands are strings, time is an offset.
import SRAMQP
import SRTransport
import Synchronization
import Testing

typealias State = AMQPConnectionState<Int, String>

private let t0 = ContinuousClock.now
private func at(_ seconds: Double) -> ContinuousClock.Instant { t0 + .seconds(seconds) }

private let policy = State.Policy(operationTimeout: .seconds(10), closeTimeout: .seconds(5),
                                  minimumReconnectDelay: .milliseconds(100), maximumReconnectDelay: .seconds(1))

private func makeState() -> State { State(endpoint: "amqp://test@broker:5672/%2F", policy: policy, now: t0) }

private func publish(_ n: Int, to exchange: String = "jobs", deadline: Double = 10) -> State.PendingPublish {
    State.PendingPublish(message: Message(body: [UInt8(n)]), exchange: exchange, routingKey: "k",
                         deadline: at(deadline), completion: n)
}

/// The publishes an action list completes: "ok" or the error's code.
private func completed(_ actions: [State.Action]) -> [Int: String] {
    var out: [Int: String] = [:]
    for case .completePublish(let n, let error) in actions { out[n] = error?.code.rawValue ?? "ok" }
    return out
}

/// The subscriptions an action list finishes: "ok" (normally) or the error's code.
private func finished(_ actions: [State.Action]) -> [UInt64: String] {
    var out: [UInt64: String] = [:]
    for case .finishSubscription(let id, let error) in actions { out[id] = error?.code.rawValue ?? "ok" }
    return out
}

/// A state with publishes 1...n sent on a fresh publishing channel (sequence numbers 1...n).
private func sending(_ n: Int) -> State {
    var s = makeState()
    s.publishChannelOpened()
    for i in 1...n { s.sent(publish(i)) }
    return s
}

@Suite struct PublisherConfirmTests {
    @Test func aSingleAckCompletesOnlyItsPublish() {
        var s = sending(3)
        #expect(completed(s.confirm(2, multiple: false, error: nil)) == [2: "ok"])
        #expect(s.unconfirmed.map(\.completion) == [1, 3])
        // An unknown or repeated tag settles nothing.
        #expect(s.confirm(2, multiple: false, error: nil).isEmpty)
        #expect(s.confirm(9, multiple: false, error: nil).isEmpty)
    }

    @Test func aMultipleAckSettlesEverySequenceUpToItsTag() {
        var s = sending(4)
        let done = completed(s.confirm(3, multiple: true, error: nil))
        #expect(done == [1: "ok", 2: "ok", 3: "ok"])
        #expect(s.unconfirmed.map(\.completion) == [4])
    }

    @Test func aNackFailsThePublishAsRejected() {
        var s = sending(2)
        let actions = s.confirm(1, multiple: false, error: s.rejectedError)
        #expect(completed(actions) == [1: "publishRejected"])
        guard case .completePublish(_, let error?) = actions.first else { Issue.record("no error"); return }
        #expect(error.message.contains("basic.nack"))
        #expect(!error.message.contains("secret"))
        #expect(completed(s.confirm(2, multiple: true, error: s.rejectedError)) == [2: "publishRejected"])
    }

    @Test func sequenceNumbersRestartOnANewPublishingChannel() {
        var s = sending(2)
        #expect(s.unconfirmed.map(\.sequence) == [1, 2])
        _ = s.connectionLost()
        s.publishChannelOpened()
        for p in s.takeUnsent() { s.sent(p) }
        #expect(s.unconfirmed.map(\.sequence) == [1, 2])
        #expect(s.unconfirmed.map(\.completion) == [1, 2])
    }

    @Test func aBatchCompletesOnceAfterEveryMemberWithTheFirstError() {
        let calls = Calls()
        let waiter = BatchWaiter(count: 3) { error in calls.append((error as? TransportError)?.code) }
        waiter.settle(nil)
        waiter.settle(TransportError(.publishRejected, "first"))
        #expect(calls.values.isEmpty)
        waiter.settle(TransportError(.closed, "second"))
        #expect(calls.values == [.publishRejected])
        waiter.settle(nil)  // a stray extra settle must not complete it twice
        #expect(calls.values.count == 1)
    }

    @Test func aBatchWithoutErrorsCompletesWithNil() {
        let calls = Calls()
        let waiter = BatchWaiter(count: 2) { error in calls.append((error as? TransportError)?.code) }
        waiter.settle(nil)
        waiter.settle(nil)
        #expect(calls.values == [.none])
    }
}

@Suite struct UnconfirmedPublishTests {
    @Test func aLostConnectionKeepsUnconfirmedAheadOfUnsentForThePublishing() {
        var s = sending(2)
        s.park(publish(3))
        let actions = s.connectionLost()
        #expect(actions.isEmpty, "nothing fails: the messages are published again")
        #expect(s.unconfirmed.isEmpty)
        #expect(s.unsent.map(\.completion) == [1, 2, 3])
        #expect(!s.publishOpen && !s.controlOpen)
    }

    @Test func newPublishesWaitBehindParkedOnesToKeepTheOrder() {
        var s = makeState()
        #expect(s.mustPark(connected: false, flushing: false))
        #expect(!s.mustPark(connected: true, flushing: false))
        s.park(publish(1))
        #expect(s.mustPark(connected: true, flushing: false))
        #expect(!s.mustPark(connected: true, flushing: true))
        // A flush that stops parks the rest behind whatever it parked itself.
        s.park(publish(2))
        let batch = s.takeUnsent()
        s.park(batch[0])
        s.park(contentsOf: batch[1...])
        #expect(s.unsent.map(\.completion) == [1, 2])
    }

    @Test func aPublishTo404ExchangeFailsOnlyThePublishesItNames() {
        var s = makeState()
        s.publishChannelOpened()
        s.sent(publish(1, to: "missing"))
        s.sent(publish(2, to: "jobs"))
        s.park(publish(3, to: "jobs"))
        let error = TransportError(.notFound, "publishing: NOT_FOUND - no exchange 'missing' in vhost '/'")
        let actions = s.channelClosedByBroker(State.publishChannel, replyCode: 404,
                                              replyText: "NOT_FOUND - no exchange 'missing' in vhost '/'", error: error)
        #expect(completed(actions) == [1: "notFound"])
        #expect(s.unsent.map(\.completion) == [2, 3])
        #expect(!s.publishOpen)
    }

    @Test func anyOtherPublishingChannelCloseFailsEveryUnconfirmedPublish() {
        var s = sending(2)
        s.park(publish(3))
        let error = TransportError(.protocolError, "closed")
        let actions = s.channelClosedByBroker(State.publishChannel, replyCode: 541, replyText: "INTERNAL_ERROR", error: error)
        #expect(completed(actions) == [1: "protocolError", 2: "protocolError"])
        #expect(s.unsent.map(\.completion) == [3])
    }
}

@Suite struct SubscriptionStateTests {
    @Test func aReconnectRestoresSubscriptionsWithANewGenerationAndIgnoresOldTags() throws {
        var s = makeState()
        let first = try s.allocateChannel(limit: 2047)
        s.consuming(id: 7, queue: "tasks", prefetch: 4, channel: first)
        let oldDelivery = s.delivered(1, channel: first)
        let old = try #require(oldDelivery)
        #expect(old.subscription == 7)

        _ = s.connectionLost()
        #expect(s.settle(7, old.tag) == nil, "disconnected: nothing to ack")
        #expect(s.subscriptionsToRestore.map(\.id) == [7])
        let second = try s.allocateChannel(limit: 2047)
        s.consuming(id: 7, queue: "tasks", prefetch: 4, channel: second)
        let newDelivery = s.delivered(1, channel: second)
        let new = try #require(newDelivery)
        #expect(new.tag.generation > old.tag.generation)
        #expect(new.tag.value == old.tag.value)
        #expect(s.settle(7, old.tag) == nil, "a tag of the previous connection is stale")
        #expect(s.settle(7, new.tag) == second)
    }

    @Test func aTagIsSettledOnceAndOnlyIfDelivered() throws {
        var s = makeState()
        let channel = try s.allocateChannel(limit: 2047)
        s.consuming(id: 1, queue: "q", prefetch: 0, channel: channel)
        let delivery = s.delivered(5, channel: channel)
        let d = try #require(delivery)
        #expect(s.settle(1, d.tag) == channel)
        #expect(s.settle(1, d.tag) == nil, "a second ack would make the broker close the channel")
        #expect(s.settle(1, DeliveryTag(generation: d.tag.generation, value: 6)) == nil)
        #expect(s.settle(2, d.tag) == nil)
        #expect(s.delivered(1, channel: 99) == nil)
    }

    @Test func cancellingClosesTheChannelThenFinishesTheStream() throws {
        var s = makeState()
        let channel = try s.allocateChannel(limit: 2047)
        s.consuming(id: 1, queue: "q", prefetch: 0, channel: channel)
        let actions = s.cancel(1)
        guard actions.count == 2, case .closeChannel(let closed, _) = actions[0],
              case .finishSubscription(1, nil) = actions[1] else {
            Issue.record("unexpected actions \(actions)"); return
        }
        #expect(closed == channel)
        #expect(s.cancel(1).isEmpty, "cancelling twice does nothing")
        s.closingChannel(channel, sent: true)
        #expect(try s.allocateChannel(limit: 2047) == channel, "the channel is free again")
    }

    @Test func cancellingWhileDisconnectedOnlyFinishes() throws {
        var s = makeState()
        s.consuming(id: 1, queue: "q", prefetch: 0, channel: try s.allocateChannel(limit: 2047))
        _ = s.connectionLost()
        #expect(finished(s.cancel(1)) == [1: "ok"])
    }

    @Test func aBrokerCancelOrChannelCloseFinishesTheStreamWithTheError() throws {
        var s = makeState()
        let a = try s.allocateChannel(limit: 2047)
        let b = try s.allocateChannel(limit: 2047)
        s.consuming(id: 1, queue: "deleted", prefetch: 0, channel: a)
        s.consuming(id: 2, queue: "other", prefetch: 0, channel: b)
        #expect(finished(s.cancelledByBroker(channel: a)) == [1: "notFound"])
        let closed = s.channelClosedByBroker(b, replyCode: 406, replyText: "PRECONDITION_FAILED",
                                             error: TransportError(.precondition, "x"))
        #expect(finished(closed) == [2: "precondition"])
        #expect(s.subscriptions.isEmpty)
        #expect(s.delivered(1, channel: b) == nil)
    }

    @Test func subscriptionsToExclusiveQueuesEndWithTheConnection() throws {
        var s = makeState()
        s.declaredExclusive("reply-1")
        s.consuming(id: 1, queue: "reply-1", prefetch: 0, channel: try s.allocateChannel(limit: 2047))
        s.consuming(id: 2, queue: "tasks", prefetch: 0, channel: try s.allocateChannel(limit: 2047))
        #expect(finished(s.connectionLost()) == [1: "closed"])
        #expect(s.subscriptionsToRestore.map(\.id) == [2])
        #expect(!s.isExclusive("reply-1"))
    }

    @Test func aSubscriptionThatCannotBeRestoredFinishesWithTheError() throws {
        var s = makeState()
        s.consuming(id: 3, queue: "gone", prefetch: 0, channel: try s.allocateChannel(limit: 2047))
        _ = s.connectionLost()
        #expect(finished(s.restoreFailed(3, error: TransportError(.notFound, "no queue"))) == [3: "notFound"])
        #expect(s.subscriptionsToRestore.isEmpty)
    }

    @Test func channelsAreAllocatedLowestFirstUpToTheLimit() throws {
        var s = makeState()
        #expect(try s.allocateChannel(limit: 4) == State.firstSubscriptionChannel)
        #expect(try s.allocateChannel(limit: 4) == 4)
        #expect(throws: TransportError.self) { try s.allocateChannel(limit: 4) }
        _ = s.connectionLost()
        #expect(try s.allocateChannel(limit: 4) == State.firstSubscriptionChannel)
    }
}

@Suite struct ReconnectPolicyTests {
    @Test func theDelayDoublesUpToTheMaximumAndResetsOnSuccess() {
        var s = makeState()
        #expect(s.reconnectDelay == .milliseconds(100))
        var delays: [Duration] = []
        for i in 0..<6 {
            s.reconnectFailed(TransportError(.connectionFailed, "refused"), now: at(Double(i)), jitter: 1)
            delays.append(s.reconnectDelay)
        }
        #expect(delays == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1), .seconds(1)])
        #expect(s.failedAttempts == 6)
        #expect(s.nextAttempt == at(5) + .seconds(1))
        #expect(s.lastError?.message == "refused")

        s.markLost(at: at(0))
        let (attempts, downtime) = s.reconnected(now: at(7))
        #expect(attempts == 7)
        #expect(downtime == .seconds(7))
        #expect(s.failedAttempts == 0)
        #expect(s.reconnectDelay == .milliseconds(100))
    }

    @Test func theNextAttemptIsJitteredAndWaitedFor() {
        var s = makeState()
        s.scheduleAttempt(now: at(0), jitter: 0.5)
        #expect(s.nextAttempt == at(0.05))
        #expect(!s.shouldReconnect(connected: false, now: at(0.04)))
        #expect(s.shouldReconnect(connected: false, now: at(0.05)))
        #expect(!s.shouldReconnect(connected: true, now: at(1)))
        #expect(s.pollTimeout(connected: false, now: at(0.02)) == .milliseconds(30))
        #expect(s.pollTimeout(connected: true, now: at(0.02)) == .milliseconds(100))
        s.requestClose(now: at(0))
        #expect(!s.shouldReconnect(connected: false, now: at(1)), "no reconnecting while closing")
        #expect(s.pollTimeout(connected: false, now: at(0)) == .milliseconds(10))
    }
}

@Suite struct DeadlineTests {
    @Test func commandsAndPublishesFailWhenTheirDeadlinePasses() {
        var s = makeState()
        s.receive([State.PendingCommand(what: "declaring queue 'q'", needsConnection: true, deadline: at(10), command: "declare"),
                   State.PendingCommand(what: "binding", needsConnection: true, deadline: at(20), command: "bind")])
        s.park(publish(1, deadline: 10))
        s.park(publish(2, deadline: 20))
        s.publishChannelOpened()
        s.sent(publish(3, deadline: 10))
        #expect(s.expire(now: at(9.9), connected: false).isEmpty)

        s.recordError(TransportError(.connectionFailed, "connection refused"))
        let actions = s.expire(now: at(10), connected: false)
        var failedCommands: [String: String] = [:]
        for case .failCommand(let c, let e) in actions { failedCommands[c] = e.message }
        #expect(failedCommands.keys.sorted() == ["declare"])
        #expect(failedCommands["declare"]?.contains("declaring queue 'q' did not complete within 10.0 seconds") == true)
        #expect(failedCommands["declare"]?.contains("is unreachable (last error: connection refused)") == true)
        #expect(completed(actions) == [1: "connectionFailed", 3: "connectionFailed"])
        #expect(s.waiting.map(\.command) == ["bind"])
        #expect(s.unsent.map(\.completion) == [2])
        #expect(s.unconfirmed.isEmpty)

        var connected = makeState()
        connected.receive([State.PendingCommand(what: "x", needsConnection: true, deadline: at(1), command: "x")])
        guard case .failCommand(_, let e)? = connected.expire(now: at(1), connected: true).first else {
            Issue.record("not expired"); return
        }
        #expect(e.message.hasSuffix("did not answer"))
    }

    @Test func aCommandThatKeepsBreakingTheConnectionFailsOnItsThirdAttempt() {
        var s = makeState()
        s.receive([State.PendingCommand(what: "x", needsConnection: true, deadline: at(10), command: "x")])
        let lost = TransportError(.connectionFailed, "lost")
        for _ in 0..<2 {
            let job = s.takeWaiting()[0]
            #expect(s.commandLostConnection(job, error: lost).isEmpty)
        }
        let job = s.takeWaiting()[0]
        #expect(job.attempts == 2)
        guard case .failCommand("x", let e)? = s.commandLostConnection(job, error: lost).first else {
            Issue.record("not failed"); return
        }
        #expect(e.message == "lost")
        #expect(s.waiting.isEmpty)
    }

    @Test func closingWaitsForConfirmsUntilTheCloseTimeout() {
        var s = sending(1)
        #expect(!s.shouldStop(connected: true, now: at(0)))
        s.requestClose(now: at(0))
        s.requestClose(now: at(3))  // a second request does not extend the deadline
        #expect(!s.shouldStop(connected: true, now: at(4.9)))
        #expect(s.shouldStop(connected: true, now: at(5)))
        #expect(s.shouldStop(connected: false, now: at(0)))
        _ = s.confirm(1, multiple: false, error: nil)
        #expect(s.shouldStop(connected: true, now: at(0)))
    }

    @Test func shuttingDownFinishesStreamsAndFailsEverythingPending() throws {
        var s = sending(1)
        s.park(publish(2))
        s.consuming(id: 4, queue: "q", prefetch: 0, channel: try s.allocateChannel(limit: 2047))
        s.receive([State.PendingCommand(what: "x", needsConnection: true, deadline: at(10), command: "x")])
        let actions = s.shutDown()
        #expect(finished(actions) == [4: "ok"])
        #expect(completed(actions) == [1: "closed", 2: "closed"])
        var failed: [String] = []
        for case .failCommand(let c, let e) in actions where e.code == .closed { failed.append(c) }
        #expect(failed == ["x"])
        #expect(s.subscriptions.isEmpty && s.unsent.isEmpty && s.unconfirmed.isEmpty && s.waiting.isEmpty)
    }
}

/// Records completions (called from `BatchWaiter`, which requires a Sendable closure).
private final class Calls: Sendable {
    private let state = Mutex<[TransportError.Code?]>([])
    var values: [TransportError.Code?] { state.withLock { $0 } }
    func append(_ v: TransportError.Code?) { state.withLock { $0.append(v) } }
}
