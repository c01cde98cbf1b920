// An inference answer: the exact logits of some samples at one resolution, from a consumer.
import SRCore
import SRTransport

/// Body: the sample indices as UInt32 LE (count), then the logits as Float64 LE
/// (count × classes, sample-major). The logits are exact dyadic values rounded to Float64.
public struct InferencePartial: Sendable, Equatable {
    public var job: String
    public var task: String
    public var resolution: Int
    public var classes: Int
    public var deadline: Deadline
    public var computeMicroseconds: Int64
    public var worker: String
    public var indices: [Int]
    /// One row of `classes` logits per index.
    public var logits: [[Double]]

    public static let kind = "infer-partial"

    public init(for task: InferenceTask, logits: [[Double]], computeMicroseconds: Int64, worker: String) {
        job = task.job
        self.task = task.task
        resolution = task.resolution
        classes = logits.first?.count ?? 0
        deadline = task.deadline
        self.computeMicroseconds = computeMicroseconds
        self.worker = worker
        indices = task.indices
        self.logits = logits
    }

    public func encode() -> Message {
        .wire(kind: Self.kind, headers: [
            Header.job: .string(job), Header.task: .string(task), Header.resolution: .int(Int64(resolution)),
            Header.classes: .int(Int64(classes)), Header.samples: .int(Int64(indices.count)),
            Header.deadline: .int(deadline.epochMs), Header.computeMicroseconds: .int(computeMicroseconds),
            Header.worker: .string(worker),
        ], body: LittleEndian.bytes(indices.map { UInt32($0) }) + LittleEndian.bytes(logits.flatMap { $0 }),
        messageID: "\(job)/\(task)", persistent: false)
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.jobID()
        task = try h.taskID()
        resolution = try h.count(Header.resolution, max: WireLimits.maxChunks)
        classes = try h.count(Header.classes, max: 100_000)
        let count = try h.count(Header.samples, max: InferenceTask.maxIndices)
        guard classes >= 1, count >= 1 else { throw WireError("an inference partial needs ≥ 1 sample and ≥ 1 class") }
        deadline = Deadline(epochMs: try h.int(Header.deadline))
        computeMicroseconds = (try? h.int(Header.computeMicroseconds)) ?? 0
        worker = h.optionalString(Header.worker) ?? "?"
        let values = try WireLimits.product(count, classes, "partial logits")
        guard message.body.count == 4 * count + 8 * values else {
            throw WireError("body is \(message.body.count) bytes; expected \(4 * count + 8 * values) for \(count) samples × \(classes) logits")
        }
        let split = message.body.startIndex + 4 * count
        indices = LittleEndian.uint32s(message.body[..<split]).map { Int($0) }
        try InferenceTask.checkIndices(indices, samples: Int(UInt32.max))
        let flat = LittleEndian.doubles(message.body[split...])
        guard flat.allSatisfy(\.isFinite) else { throw WireError("the partial carries NaN or infinite logits") }
        let width = classes
        logits = (0..<count).map { Array(flat[($0 * width)..<(($0 + 1) * width)]) }
    }
}
