// A notice that the aggregator opened a job: what a live view (`srproduce top`) needs to show a job
// before its first refinement — how many resolutions it has and when its deadline is.
import SRCore
import SRTransport

/// From the aggregator to `sr.outputs` with routing key `open.<id>` (transient, empty body), once
/// per job when it opens. Readers of `job.#` never see it (another key space); `srproduce top`
/// binds `open.#`. Best effort: a reader that misses it learns of the job from its outputs.
public struct OpenedNotice: Sendable, Equatable {
    public var job: String
    /// Resolutions the job has (R): layers of a mat-vec job, resolutions of an inference job.
    public var of: Int
    /// The job's deadline.
    public var deadline: Deadline
    /// Milliseconds since the job's creation when it opened.
    public var elapsedMs: Double

    public static let kind = "opened"

    public init(job: String, of: Int, deadline: Deadline, elapsedMs: Double) {
        self.job = job
        self.of = of
        self.deadline = deadline
        self.elapsedMs = elapsedMs
    }

    /// `open.<id>`.
    public var routingKey: String { Topology.openedKey(job: job) }

    public func encode() -> Message {
        .wire(kind: Self.kind, headers: [Header.job: .string(job), Header.of: .int(Int64(of)),
                                         Header.deadline: .int(deadline.epochMs), Header.elapsed: .double(elapsedMs)],
              body: [], messageID: "\(job)/opened", persistent: false)
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.jobID()
        of = try h.count(Header.of, max: 1 << 16)
        deadline = Deadline(epochMs: try h.int(Header.deadline))
        elapsedMs = try h.double(Header.elapsed)
    }
}
