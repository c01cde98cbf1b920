// The hand-over between async callers and the connection's thread: commands, the inbox that
// wakes the thread, the exit signal close() awaits, and how publishes are completed.
import Foundation
import SRTransport
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

typealias ConnectionState = AMQPConnectionState<PublishCompletion, Job>
typealias PendingPublish = ConnectionState.PendingPublish
typealias PendingJob = ConnectionState.PendingCommand

/// A command for the connection's thread. `execute` either completes the caller's continuation
/// or throws: `ConnectionLost` re-queues the job until the next connection, anything else goes
/// to `fail`. A job is completed exactly once.
struct Job: Sendable {
    let execute: @Sendable (Loop) throws -> Void
    let fail: @Sendable (any Error) -> Void
}

/// The lock-protected hand-over from async callers to the thread, plus a pipe that wakes the
/// thread out of poll(2) when a job arrives.
final class Inbox: Sendable {
    private struct State {
        var jobs: [PendingJob] = []
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
    func submit(_ job: PendingJob) -> Bool {
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
    func take() -> (jobs: [PendingJob], closeRequested: Bool) {
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
    func finish() -> [PendingJob] {
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
final class ExitSignal: Sendable {
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

enum Settlement: Sendable { case ack, requeue, discard }

/// How a publish is completed, exactly once: a single caller's continuation, or one member of
/// a batch (`BatchWaiter`).
struct PublishCompletion: Sendable {
    let done: @Sendable ((any Error)?) -> Void
    init(_ done: @escaping @Sendable ((any Error)?) -> Void) { self.done = done }
    func resume() { done(nil) }
    func resume(throwing error: any Error) { done(error) }
}

/// Completes a batch once every message of the batch is settled, with the first error.
package final class BatchWaiter: Sendable {
    private let state: Mutex<(remaining: Int, error: (any Error)?, completion: (@Sendable ((any Error)?) -> Void)?)>

    package init(count: Int, completion: @escaping @Sendable ((any Error)?) -> Void) {
        state = Mutex((count, nil, completion))
    }

    @Sendable package func settle(_ error: (any Error)?) {
        let done = state.withLock { s -> (@Sendable ((any Error)?) -> Void, (any Error)?)? in
            if s.error == nil { s.error = error }
            s.remaining -= 1
            guard s.remaining == 0, let c = s.completion else { return nil }
            s.completion = nil
            return (c, s.error)
        }
        guard let (completion, error) = done else { return }
        completion(error)
    }
}

/// Thrown inside the thread when the connection died during a command.
struct ConnectionLost: Error {
    let error: TransportError
}

/// A message being assembled from its method, header and body frames.
struct PartialContent {
    enum Target {
        case delivery(tag: UInt64, redelivered: Bool, exchange: String, routingKey: String)
        case returned
    }
    let target: Target
    var message: Message?
    var expected = 0
    var body: [UInt8] = []
}

/// A new subscription handed to the thread: what to consume and where deliveries go.
struct Subscriber: Sendable {
    let id: UInt64
    let queue: String
    let prefetch: Int
    let continuation: AsyncThrowingStream<Delivery, any Error>.Continuation
}
