// The one sanctioned home for blocking work (kernels, file reads): a dedicated thread per
// owner, so CPU-bound products never occupy Swift's cooperative thread pool — and can run at a
// lower scheduling priority than the threads that move messages.
import Foundation
import Synchronization

public final class BlockingWork: Sendable {
    /// Jobs in order, and whether the owner is gone (the thread then exits).
    private final class Queue: Sendable {
        typealias Job = @Sendable () -> Void
        let state = Mutex<(jobs: [Job], stopped: Bool)>(([], false))
        let wake = DispatchSemaphore(value: 0)
    }
    private let queue = Queue()

    /// `niceness` (0…19) applies to this thread only: a consumer's kernels yield the CPU to its
    /// own messaging threads, the broker and the aggregator on a shared machine, so a hop is
    /// never queued behind a kernel's time slice.
    public init(label: String, niceness: Int32 = 0) {
        let queue = self.queue
        let thread = Thread {
            // Linux: PRIO_PROCESS with who = 0 sets the calling thread's niceness only.
            if niceness > 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceness) }
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
