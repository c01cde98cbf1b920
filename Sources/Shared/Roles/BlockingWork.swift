// The one sanctioned home for blocking work (kernels, file reads): a serial dispatch queue per
// owner, so CPU-bound products never occupy Swift's cooperative thread pool.
import Dispatch

public final class BlockingWork: Sendable {
    private let queue: DispatchQueue

    public init(label: String) {
        queue = DispatchQueue(label: label)
    }

    /// Runs `body` on this owner's thread and resumes with its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}
