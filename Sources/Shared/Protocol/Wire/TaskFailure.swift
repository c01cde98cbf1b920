// A consumer's word that a task cannot be computed, so that the job fails at once with the
// reason instead of being answered by its deadline with nothing.
import SRTransport

/// From a consumer to `sr.partials` (beside the dead-lettered task): task `sr-task` of job
/// `sr-job` cannot be computed by worker `sr-worker` — a missing operand, a store that does not
/// match, a task the worker cannot decode past its job id — for `sr-reason`. Empty body,
/// transient. The aggregator ends the job with a `failed` output carrying the reason.
public struct TaskFailure: Sendable, Equatable {
    public var job: String
    public var task: String
    public var worker: String
    public var reason: String

    public static let kind = "task-failed"
    /// Worker names are for people reading the reason; longer ones are cut.
    static let maxWorkerLength = 128

    public init(job: String, task: String, worker: String, reason: String) {
        self.job = job
        self.task = task
        self.worker = worker
        self.reason = reason
    }

    public func encode() -> Message {
        .wire(kind: Self.kind, headers: [
            Header.job: .string(job), Header.task: .string(task),
            Header.worker: .string(String(worker.prefix(Self.maxWorkerLength))),
            Header.reason: .string(String(reason.prefix(WireLimits.maxReasonLength))),
        ], body: [], messageID: "\(job)/\(task)/failed", persistent: false)
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.jobID()
        task = try h.taskID()
        worker = String((h.optionalString(Header.worker) ?? "?").prefix(Self.maxWorkerLength))
        reason = String((h.optionalString(Header.reason) ?? "no reason given").prefix(WireLimits.maxReasonLength))
        guard message.body.isEmpty else { throw WireError("a task failure has no body (got \(message.body.count) bytes)") }
    }

    /// What the submitter reads in the job's `failed` output.
    public var description: String { "task \(task) could not be computed by worker '\(worker)': \(reason)" }
}
