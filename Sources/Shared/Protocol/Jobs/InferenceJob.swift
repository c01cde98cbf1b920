// An inference job as the producer plans it and the aggregator tracks it: which network, which
// images, how samples exit, by when.
import SRCore

/// Classify `samples` images with a registered network in resolutions 1…R under a deadline.
/// The images are a registered matrix (one row per sample, C order), so tasks carry only digests
/// and sample indices, and the aggregator can ask for any sample at any resolution.
/// Serialised as JSON in the job's open record (docs/WIRE.md).
public struct InferenceJob: Sendable, Codable, Equatable {
    /// Letters, digits, '-' and '_'; at most 64 characters (as for mat-vec jobs).
    public var id: String
    /// SHA-256 digest of the registered model (a .safetensors object in the store).
    public var model: String
    /// SHA-256 digest of the registered images matrix (samples × input size).
    public var images: String
    public var samples: Int
    /// The partition every input sample is split by (R chunks).
    public var inputPartition: [Int]
    /// R.
    public var resolutions: Int
    /// Logits per sample.
    public var classes: Int
    /// The exit rule in its text form (`ExitRule(parsing:)`), e.g. "margin:0.27,0.65" or "none".
    public var exitRule: String
    /// Samples per task at resolution 1; later tasks carry the undecided samples of one answer.
    public var blockSize: Int
    /// Wall-clock milliseconds since the Unix epoch.
    public var createdMs: Int64
    public var deadline: Deadline

    /// The JSON keys of the open record (docs/WIRE.md): the deadline travels as `deadlineMs`.
    enum CodingKeys: String, CodingKey {
        case id, model, images, samples, inputPartition, resolutions, classes, exitRule, blockSize, createdMs
        case deadline = "deadlineMs"
    }

    /// Most samples per job: the final answer lists every sample in one message.
    public static let maxSamples = 100_000
    /// Most bytes the final answer may take (estimated): under RabbitMQ 4's 16 MiB default
    /// message limit, with room for headers.
    public static let maxFinalBytes = 12 << 20
    /// Most logits in one partial (block × classes): 8 MiB of Float64.
    public static let maxPartialLogits = 1 << 20

    /// A generous estimate of the final answer's JSON size: per sample ~96 bytes of fields
    /// and ≤ 24 per logit.
    public static func finalBytes(samples: Int, classes: Int) -> Int { samples * (96 + 24 * classes) }

    public init(id: String, model: String, images: String, samples: Int, inputPartition: [Int], resolutions: Int,
                classes: Int, exitRule: String, blockSize: Int, createdMs: Int64, deadline: Deadline) {
        self.id = id
        self.model = model
        self.images = images
        self.samples = samples
        self.inputPartition = inputPartition
        self.resolutions = resolutions
        self.classes = classes
        self.exitRule = exitRule
        self.blockSize = blockSize
        self.createdMs = createdMs
        self.deadline = deadline
    }

    /// The deadline relative to the job's creation, as the user gave it.
    public var relativeDeadlineMs: Int64 { deadline.epochMs &- createdMs }

    /// The parsed exit rule.
    public func rule() throws(WireError) -> ExitRule {
        do { return try ExitRule(parsing: exitRule) } catch { throw WireError("job \(id): \(error)") }
    }

    /// Checks everything a consumer or aggregator relies on; the message says what is wrong.
    public func validate() throws(WireError) {
        guard MatVecJob.isValidID(id) else { throw WireError("job id '\(id)' must be 1–64 letters, digits, '-' or '_'") }
        guard Digest.isValid(model), Digest.isValid(images) else {
            throw WireError("job \(id): model and images must be SHA-256 digests of registered objects")
        }
        guard (1...Self.maxSamples).contains(samples) else {
            throw WireError("job \(id): \(samples) samples; a job takes 1...\(Self.maxSamples)")
        }
        guard (1...WireLimits.maxChunks).contains(resolutions), inputPartition.count == resolutions + 1 else {
            throw WireError("job \(id): \(resolutions) resolutions with an input partition of \(inputPartition.count) exponents; it needs R + 1")
        }
        do { _ = try PartitionVector(inputPartition) } catch { throw WireError("job \(id): input partition: \(error)") }
        guard (1...100_000).contains(classes) else { throw WireError("job \(id): \(classes) classes is not in 1...100000") }
        guard (1...min(samples, InferenceTask.maxIndices)).contains(blockSize) else {
            throw WireError("job \(id): blockSize must be in 1...\(min(samples, InferenceTask.maxIndices))")
        }
        guard blockSize * classes <= Self.maxPartialLogits else {
            throw WireError("job \(id): blockSize \(blockSize) × \(classes) classes exceeds \(Self.maxPartialLogits) logits per task; use smaller blocks")
        }
        guard Self.finalBytes(samples: samples, classes: classes) <= Self.maxFinalBytes else {
            throw WireError("job \(id): \(samples) samples × \(classes) classes would make a final answer over \(Self.maxFinalBytes >> 20) MiB; split the images into several jobs")
        }
        guard WireLimits.creationRange.contains(createdMs) else {
            throw WireError("job \(id): createdMs \(createdMs) is not a plausible time (ms since the Unix epoch)")
        }
        guard deadline.epochMs > createdMs, relativeDeadlineMs <= WireLimits.maxRelativeDeadlineMs else {
            throw WireError("job \(id): the deadline must be after creation and at most a day later")
        }
        let r = try rule()
        if let why = r.mismatch(outputs: classes) { throw WireError("job \(id): \(why)") }
    }
}
