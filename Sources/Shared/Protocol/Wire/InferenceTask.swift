// An inference task: some samples of one job at one resolution, for a consumer.
import SRCore
import SRTransport

/// What a consumer needs to evaluate samples at resolution r: the model and images digests
/// (loaded from the operand store and cached), the input partition, and the sample indices.
/// Body: the sample indices as UInt32 LE, strictly increasing, each < `sr-samples`.
public struct InferenceTask: Sendable, Equatable {
    public var job: String
    /// Unique within the job: "r<resolution>-s<first sample>" (samples of one resolution are
    /// asked for at most once each, so the first sample names the task).
    public var task: String
    public var resolution: Int
    public var resolutions: Int
    public var model: String
    public var images: String
    public var samples: Int
    public var inputPartition: [Int]
    public var deadline: Deadline
    public var indices: [Int]

    public static let kind = "infer-task"
    /// Most samples in one task.
    public static let maxIndices = 1 << 16

    public init(job: InferenceJob, resolution: Int, indices: [Int]) {
        self.job = job.id
        self.task = "r\(resolution)-s\(indices.first ?? 0)"
        self.resolution = resolution
        self.resolutions = job.resolutions
        self.model = job.model
        self.images = job.images
        self.samples = job.samples
        self.inputPartition = job.inputPartition
        self.deadline = job.deadline
        self.indices = indices
    }

    /// Priority by resolution, as mat-vec layers: resolution 1 first under a backlog.
    public func encode(expiration: Duration?) -> Message {
        .wire(kind: Self.kind, headers: [
            Header.job: .string(job), Header.task: .string(task), Header.resolution: .int(Int64(resolution)),
            Header.of: .int(Int64(resolutions)), Header.model: .string(model), Header.images: .string(images),
            Header.samples: .int(Int64(samples)), Header.deadline: .int(deadline.epochMs),
            Header.inputPartition: .string(inputPartition.map(String.init).joined(separator: ",")),
        ], body: LittleEndian.bytes(indices.map { UInt32($0) }),
        priority: Topology.taskPriority(layer: resolution - 1), expiration: expiration, messageID: "\(job)/\(task)",
        persistent: false)
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.jobID()
        task = try h.taskID()
        resolutions = try h.count(Header.of, max: WireLimits.maxChunks)
        resolution = try h.count(Header.resolution, max: WireLimits.maxChunks)
        guard (1...max(1, resolutions)).contains(resolution) else {
            throw WireError("resolution \(resolution) is outside 1...\(resolutions)")
        }
        model = try h.string(Header.model)
        images = try h.string(Header.images)
        guard Digest.isValid(model), Digest.isValid(images) else {
            throw WireError("headers \(Header.model) and \(Header.images) must be SHA-256 digests")
        }
        samples = try h.count(Header.samples, max: InferenceJob.maxSamples)
        deadline = Deadline(epochMs: try h.int(Header.deadline))
        inputPartition = try TaskMessage.partition(h.string(Header.inputPartition), Header.inputPartition)
        guard inputPartition.count == resolutions + 1 else {
            throw WireError("header \(Header.inputPartition) has \(inputPartition.count - 1) chunks for \(resolutions) resolutions")
        }
        guard message.body.count % 4 == 0, (1...Self.maxIndices).contains(message.body.count / 4) else {
            throw WireError("body is \(message.body.count) bytes; expected 1...\(Self.maxIndices) UInt32 sample indices")
        }
        indices = LittleEndian.uint32s(message.body[...]).map { Int($0) }
        try Self.checkIndices(indices, samples: samples)
    }

    /// Strictly increasing and below `samples`: duplicates would be evaluated twice.
    static func checkIndices(_ indices: [Int], samples: Int) throws(WireError) {
        for (k, i) in indices.enumerated() {
            guard i < samples, k == 0 || indices[k - 1] < i else {
                throw WireError("sample indices must be strictly increasing and below \(samples); index \(k) is \(i)")
            }
        }
    }
}
