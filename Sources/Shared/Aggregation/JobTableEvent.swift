// What the service tells the job table: decoded inputs (each with the handle of its delivery),
// answers to the table's own actions, publish outcomes and the tick.
import SRCore
import SRProtocol
import SRTransport

/// What happened, for the table.
public enum JobTableEvent<Handle: Hashable & Sendable>: Sendable {
    case openRecord(OpenRecord, Handle, redelivered: Bool)
    /// An open record that could not be decoded; `job`: the id its headers name, if any.
    case invalidOpenRecord(Handle, job: String?, reason: String)
    case inferenceOpenRecord(InferenceJob, ExitRule, Handle, redelivered: Bool)
    /// Answer to `.verify`: the job's state machine, built on verified statistics.
    case opened(JobAggregation)
    /// Answer to `.verify`: the record is refused for this reason.
    case refused(job: String, reason: String)
    /// Answer to `.verify(mayWait: true)`: the job waits for these checksums.
    case checksumsNeeded(job: String, key: String)
    /// Checksums built off the loop (`failure`: why they could not be).
    case checksumsReady(key: String, failure: String?)
    /// `message`: the delivery's body, for a dead-letter copy if it is parked and later refused.
    case partial(PartialMessage, Handle, message: Message)
    case inferencePartial(InferencePartial, Handle)
    case taskFailure(TaskFailure, Handle)
    /// `issued`: the deadline the message carries (nil: not known). One issued before the job
    /// was created belongs to an earlier job with the same id and is dropped.
    case deadline(job: String, Handle, issued: Deadline? = nil)
    /// A deadline message that could not be decoded.
    case invalidDeadline(Handle, reason: String)
    /// Any other input that could not be decoded.
    case invalid(Handle, queue: String, reason: String)
    /// A copy of a final in the ledger (sr.finals).
    case ledgerEntry(job: String?, Handle)
    case finalConfirmed(job: String)
    case finalFailed(job: String, JobOutput)
    case tasksUnsent(job: String, [Message])
    case tick
}
