// Reads one subscription with bounded waits. A pump task drains `deliveries` into a buffer so
// that a wait can time out without cancelling the stream (cancelling a reader ends the stream).
import SRTransport
import Synchronization

final class Inbox: Sendable {
    let subscription: Subscription
    let queue: String
    private let state = Mutex(State())

    private struct State {
        var buffered: [Delivery] = []
        /// Why the deliveries ended: nil while open, "" when they finished without error.
        var ended: String?
        var waiter: (id: UInt64, continuation: CheckedContinuation<Void, Never>)?
        var cancelledWaiters: Set<UInt64> = []
        var lastWaiterID: UInt64 = 0
        var hasNews: Bool { !buffered.isEmpty || ended != nil }
    }

    init(subscription: Subscription, queue: String) {
        self.subscription = subscription
        self.queue = queue
    }

    /// Drains the subscription until its deliveries end (or this task is cancelled).
    func pump() async {
        var ending = ""
        do {
            for try await delivery in subscription.deliveries {
                let waiter = state.withLock { s in
                    s.buffered.append(delivery)
                    return s.waiter.take()
                }
                waiter?.continuation.resume()
            }
        } catch {
            ending = "\(error)"
        }
        let waiter = state.withLock { s in
            s.ended = ending
            return s.waiter.take()
        }
        waiter?.continuation.resume()
    }

    /// The next delivery; fails if none arrives within `timeout` or the deliveries end.
    func next(within timeout: Duration = .seconds(120), file: StaticString = #fileID, line: UInt = #line) async throws -> Delivery {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (delivery, ended) = state.withLock { s in
                (s.buffered.isEmpty ? nil : s.buffered.removeFirst(), s.ended)
            }
            if let delivery { return delivery }
            if let ended {
                throw ConformanceFailure("The deliveries of \(queue) ended\(ended.isEmpty ? "" : " with \(ended)") while a message was awaited.", file: file, line: line)
            }
            if ContinuousClock.now >= deadline {
                throw ConformanceFailure("No delivery from \(queue) within \(timeout).", file: file, line: line)
            }
            await waitForNews(until: deadline)
        }
    }

    /// The next `count` deliveries, in order.
    func next(_ count: Int, within timeout: Duration = .seconds(120), file: StaticString = #fileID, line: UInt = #line) async throws -> [Delivery] {
        var deliveries: [Delivery] = []
        for _ in 0..<count { deliveries.append(try await next(within: timeout, file: file, line: line)) }
        return deliveries
    }

    /// Fails if a delivery arrives within `window`. Only for asserting absence: there is nothing
    /// to await, so this waits out the window.
    func expectNothing(for window: Duration = .milliseconds(200), file: StaticString = #fileID, line: UInt = #line) async throws {
        try await Self.expectNothing([self], for: window, file: file, line: line)
    }

    static func expectNothing(_ inboxes: [Inbox], for window: Duration = .milliseconds(200),
                              file: StaticString = #fileID, line: UInt = #line) async throws {
        try await Task.sleep(for: window)
        for inbox in inboxes {
            let unexpected = inbox.state.withLock { $0.buffered.first }
            if let unexpected {
                throw ConformanceFailure("Unexpected delivery from \(inbox.queue): \(unexpected.text) (redelivered: \(unexpected.redelivered)).", file: file, line: line)
            }
        }
    }

    /// Fails unless the deliveries end (without error) within `timeout` and nothing is left.
    func expectEnd(within timeout: Duration = .seconds(120), file: StaticString = #fileID, line: UInt = #line) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (first, ended) = state.withLock { s in (s.buffered.first, s.ended) }
            if let first {
                throw ConformanceFailure("Expected the deliveries of \(queue) to end, got \(first.text).", file: file, line: line)
            }
            if let ended {
                try check(ended.isEmpty, "The deliveries of \(queue) ended with an error: \(ended)", file: file, line: line)
                return
            }
            if ContinuousClock.now >= deadline {
                throw ConformanceFailure("The deliveries of \(queue) did not end within \(timeout).", file: file, line: line)
            }
            await waitForNews(until: deadline)
        }
    }

    func ack(_ delivery: Delivery) async throws { try await subscription.ack(delivery) }
    func ack(_ deliveries: [Delivery]) async throws { for d in deliveries { try await subscription.ack(d) } }
    func reject(_ delivery: Delivery, requeue: Bool) async throws { try await subscription.reject(delivery, requeue: requeue) }
    func cancel() async { await subscription.cancel() }

    /// Returns when a delivery arrives, the deliveries end, or `deadline` passes.
    private func waitForNews(until deadline: ContinuousClock.Instant) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
            group.addTask { await self.waitForNews() }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForNews() async {
        let id = state.withLock { s in
            s.lastWaiterID += 1
            return s.lastWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s in
                    if s.hasNews || s.cancelledWaiters.remove(id) != nil { return true }
                    s.waiter = (id, continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s in
                if s.waiter?.id == id { return s.waiter.take() }
                s.cancelledWaiters.insert(id)
                return nil
            }
            waiter?.continuation.resume()
        }
    }
}

extension Delivery {
    /// The body as UTF-8 text (the cases publish text bodies).
    var text: String { String(decoding: message.body, as: UTF8.self) }
}

extension Message {
    /// A message whose body is `text` in UTF-8.
    static func text(_ text: String, priority: UInt8? = nil, expiration: Duration? = nil,
                     headers: [String: HeaderValue] = [:]) -> Message {
        Message(body: Array(text.utf8), headers: headers, priority: priority, expiration: expiration,
                persistent: false)
    }
}
