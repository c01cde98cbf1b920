// Tasks a consumer could not compute: the submitter hears why from the job's `failed` output
// at once, instead of a silent best-so-far (or an all-zero answer) at the deadline.
import Logging
import SRAggregation
import SRProtocol
import SRTransport

extension AggregatorService.Core {
    /// An open mat-vec job fails now with the consumer's reason; a notice that overtook its
    /// job's open record (another queue) waits for it, like a partial. Either way the notice is
    /// held with the job's inputs (acked when it closes). A notice for a closed job, or an
    /// inference job, is acknowledged and logged: that job's deadline answers it.
    mutating func taskFailure(_ d: Delivery, _ sub: Subscription, _ now: Int64) async {
        let failure: TaskFailure
        do { failure = try TaskFailure(decoding: d.message) } catch {
            return await deadLetter(d, sub, Topology.partialsQueue, "invalid task failure: \(error)")
        }
        let id = failure.job
        if closed.contains(id) || inferences[id] != nil {
            if !closed.contains(id) {
                logger.warning("a consumer could not compute a task of an inference job; its deadline answers it",
                               metadata: metadata(failure))
            }
            try? await sub.ack(d)
            return
        }
        held[id, default: []].append((d.forAck, sub))
        guard jobs[id] != nil else {
            if waitingFailures[id] == nil { waitingFailures[id] = (failure, now) }
            return
        }
        await failJob(failure, now)
    }

    /// Ends an open mat-vec job with the consumer's reason (once: later notices change nothing).
    mutating func failJob(_ failure: TaskFailure, _ now: Int64) async {
        guard let job = jobs[failure.job], !job.isClosed else { return }
        logger.error("job failed: a consumer could not compute one of its tasks", metadata: metadata(failure))
        service.counters.withLock { $0.failedTasks += 1 }
        await apply(failure.job) { $0.taskFailed(reason: failure.description, nowMs: now) }
    }

    func metadata(_ failure: TaskFailure) -> Logger.Metadata {
        ["job.id": "\(failure.job)", "task": "\(failure.task)", "worker": "\(failure.worker)", "reason": "\(failure.reason)"]
    }
}
