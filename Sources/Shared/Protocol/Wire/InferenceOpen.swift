// An inference job's open record, for the aggregator: the job spec as JSON.
import SRTransport

/// Body: the `InferenceJob` as JSON. Published to sr.jobs with routing key "open", like a
/// mat-vec open record; `sr-kind` tells them apart.
public struct InferenceOpen: Sendable, Equatable {
    public var job: InferenceJob

    public static let kind = "infer-open"

    public init(job: InferenceJob) {
        self.job = job
    }

    public func encode() throws -> Message {
        .wire(kind: Self.kind, headers: [Header.job: .string(job.id), Header.deadline: .int(job.deadline.epochMs)],
              body: try JSONCoding.encode(job), messageID: "\(job.id)/open")
    }

    public init(decoding message: Message) throws(WireError) {
        _ = try HeaderReader(message, kind: Self.kind)
        do {
            job = try JSONCoding.decode(InferenceJob.self, from: message.body)
        } catch {
            throw WireError("inference open record JSON: \(error)")
        }
        try job.validate()
    }
}
