// What the aggregator publishes for an inference job: per-sample refinements as answers arrive,
// and one final answer (every sample) when all are decided or the deadline fires.
import SRTransport
import Foundation

/// Body: JSON, so that any client reads it without this library (docs/WIRE.md). Routing keys
/// as for mat-vec outputs: `job.<id>.resolution.<r>` for a refinement, `job.<id>.final`.
public struct InferenceOutput: Sendable, Codable, Equatable {
    /// One sample's best answer so far.
    public struct Answer: Sendable, Codable, Equatable {
        /// Index of the sample in the job (0-based).
        public var sample: Int
        /// The predicted class: argmax of `logits` (a single logit z: 1 if z > 0, else 0); −1 when
        /// no resolution arrived before the deadline.
        public var label: Int
        /// The resolution reached (1…R; 0 = none).
        public var resolution: Int
        /// top-1 minus top-2 logit (a single logit z: |z|; 0 before any resolution).
        public var margin: Double
        /// True once the exit rule (or resolution R) froze the sample.
        public var decided: Bool
        /// The exact logits at `resolution`, rounded to Float64.
        public var logits: [Double]

        public init(sample: Int, label: Int, resolution: Int, margin: Double, decided: Bool, logits: [Double]) {
            self.sample = sample
            self.label = label
            self.resolution = resolution
            self.margin = margin
            self.decided = decided
            self.logits = logits
        }
    }

    public var job: String
    public var status: OutputStatus
    /// R.
    public var resolutions: Int
    /// Milliseconds since the job was created.
    public var elapsedMs: Double
    /// For a deadline answer: how late after the deadline it was published.
    public var lateMs: Double?
    /// Sample-resolutions never computed because their sample had exited (so far).
    public var skipped: Int
    public var answers: [Answer]

    public static let kind = "infer-output"

    public init(job: String, status: OutputStatus, resolutions: Int, elapsedMs: Double, lateMs: Double? = nil,
                skipped: Int, answers: [Answer]) {
        self.job = job
        self.status = status
        self.resolutions = resolutions
        self.elapsedMs = elapsedMs
        self.lateMs = lateMs
        self.skipped = skipped
        self.answers = answers
    }

    /// The resolution a refinement reports (the highest among its answers).
    public var resolution: Int { answers.map(\.resolution).max() ?? 0 }

    public var routingKey: String {
        status == .partial ? Topology.resolutionKey(job: job, resolution: resolution) : Topology.finalKey(job: job)
    }

    public func encode() throws -> Message {
        .wire(kind: Self.kind, headers: [
            Header.job: .string(job), Header.status: .string(status.rawValue), Header.resolution: .int(Int64(resolution)),
            Header.of: .int(Int64(resolutions)), Header.elapsed: .double(elapsedMs),
            Header.samples: .int(Int64(answers.count)),
        ], body: try JSONCoding.encode(self), messageID: status == .partial ? nil : "\(job)/final", persistent: false)
    }

    public init(decoding message: Message) throws(WireError) {
        _ = try HeaderReader(message, kind: Self.kind)
        do {
            self = try JSONCoding.decode(InferenceOutput.self, from: message.body)
        } catch {
            throw WireError("inference output JSON: \(error)")
        }
    }
}
