// The one sanctioned home for blocking work (kernels, file reads): a dedicated thread per
// owner, so CPU-bound products never occupy Swift's cooperative thread pool — and can run at a
// lower scheduling priority than the threads that move messages.
import Foundation
import Synchronization

/// How a blocking-work thread yields the CPU to the threads that move messages.
public enum ThreadPriority: Sendable, Equatable, CustomStringConvertible {
    /// Niceness 0…19 (CFS weight: niceness 10 is about 1/10 of niceness 0's share).
    case nice(Int32)
    /// Linux SCHED_IDLE: runs only when no ordinary thread wants the core, and any waking
    /// ordinary thread (a broker, an aggregator, this process's messaging) preempts it at once
    /// instead of waiting for the end of its time slice.
    case idle

    public var description: String {
        switch self {
        case .nice(let n): "\(n)"
        case .idle: "idle"
        }
    }

    /// Applies to the calling thread only (Linux: PRIO_PROCESS / sched_setscheduler with who = 0).
    func applyToCurrentThread() {
        switch self {
        case .nice(let n):
            if n > 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, n) }
        case .idle:
            var param = sched_param(sched_priority: 0)
            // SCHED_IDLE is 5 on Linux; Glibc's module does not export the GNU constant.
            _ = sched_setscheduler(0, 5, &param)
        }
    }
}

public final class BlockingWork: Sendable {
    /// Jobs in order, and whether the owner is gone (the thread then exits).
    private final class Queue: Sendable {
        typealias Job = @Sendable () -> Void
        let state = Mutex<(jobs: [Job], stopped: Bool)>(([], false))
        let wake = DispatchSemaphore(value: 0)
    }
    private let queue = Queue()

    /// `priority` applies to this thread only: a consumer's kernels yield the CPU to its own
    /// messaging threads, the broker and the aggregator on a shared machine, so a hop is never
    /// queued behind a kernel's time slice.
    public init(label: String, priority: ThreadPriority = .nice(0)) {
        let queue = self.queue
        let thread = Thread {
            priority.applyToCurrentThread()
            while true {
                queue.wake.wait()
                let (job, stop) = queue.state.withLock { s -> (Queue.Job?, Bool) in
                    s.jobs.isEmpty ? (nil, s.stopped) : (s.jobs.removeFirst(), false)
                }
                if stop { return }
                job?()
            }
        }
        thread.name = label
        thread.start()
    }

    deinit {
        queue.state.withLock { $0.stopped = true }
        queue.wake.signal()
    }

    /// Runs `body` on this owner's thread and resumes with its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.state.withLock { $0.jobs.append { continuation.resume(with: Result { try body() }) } }
            queue.wake.signal()
        }
    }
}
