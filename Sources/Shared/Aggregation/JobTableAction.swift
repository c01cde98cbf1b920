// What the job table asks of the service that runs it, in order: acknowledge or dead-letter a
// delivery it names by handle, verify a record, publish outputs and tasks, count, log.
import SRCore
import SRProtocol
import SRTransport

/// What the service must do for the table (in order).
public enum JobTableAction<Handle: Hashable & Sendable>: Sendable {
    case ack(Handle)
    /// Send the delivery to sr.dead with this reason, then acknowledge it.
    case deadLetter(Handle, queue: String, reason: String)
    /// Send a copy of a held input to sr.dead (its delivery is acked with its job).
    case deadLetterCopy(Message, queue: String, reason: String)
    /// Recompute the record's statistics and build its verifier, then report `.opened` or
    /// `.refused`; when `mayWait` and the matrix's row checksums are not at hand, report
    /// `.checksumsNeeded` instead.
    case verify(OpenRecord, mayWait: Bool)
    /// Build these row checksums off the loop, then report `.checksumsReady`.
    case buildChecksums(key: String, MatVecJob)
    /// Publish this output (with confirm); a final one is reported back confirmed or failed.
    case emit(JobOutput)
    /// A coded layer is decoded: tell consumers (best effort) to drop its remaining tasks.
    case publishDone(job: String, layer: Int)
    /// Tell whoever follows the job how far its layers are (best effort, never waited for).
    case publishProgress(ProgressMessage)
    /// Publish these inference tasks as one batch; on failure report `.tasksUnsent`.
    case publishTasks(job: String, [Message])
    /// Publish these tasks one at a time, in order; report those left after a failure.
    case retryTasks(job: String, [Message])
    case count(JobTable<Handle>.Counter)
    case log(JobTable<Handle>.LogLevel, String, [String: String])
}

/// A job's final output, kept until the broker confirms it (retried on failure).
public enum JobOutput: Sendable {
    case matVec(OutputMessage)
    case inference(InferenceOutput)

    public var job: String {
        switch self {
        case .matVec(let o): o.job
        case .inference(let o): o.job
        }
    }
}
