// The producer side of distributed inference: check the request against the network, register
// the images, publish the open record, the deadline timer and the first resolution of every sample.
import SRCore
import SRNeural
import SRProtocol
import SRStore
import SRTransport

/// An inference request before planning.
public struct InferenceRequest: Sendable {
    /// Digest of the registered model, and the model itself (to check the request against it).
    public var model: String
    public var network: Model
    /// One sample per row.
    public var images: Matrix<Double>
    public var rule: ExitRule
    public var deadline: Duration
    /// Samples per task at the first resolution.
    public var blockSize: Int
    public var id: String?

    public init(model: String, network: Model, images: Matrix<Double>, rule: ExitRule, deadline: Duration,
                blockSize: Int = 100, id: String? = nil) {
        self.model = model
        self.network = network
        self.images = images
        self.rule = rule
        self.deadline = deadline
        self.blockSize = blockSize
        self.id = id
    }
}

public struct InferenceSubmitter: Sendable {
    /// Most image values (samples × input size) per job.
    public static let maxImageValues = 1 << 25

    let transport: any Transport
    let store: OperandStore
    let wallClock: @Sendable () -> Int64

    public init(transport: any Transport, store: OperandStore, wallClock: @escaping @Sendable () -> Int64 = WallClock.nowMs) {
        self.transport = transport
        self.store = store
        self.wallClock = wallClock
    }

    /// Prepares and publishes; returns the job as the aggregator will see it.
    public func submit(_ request: InferenceRequest) async throws -> InferenceJob {
        let job = try prepare(request)
        try await publish(job)
        return job
    }

    /// Validates (the network can be refined with these images and this rule) and registers
    /// the images; needs no broker, so bad input is refused before connecting.
    public func prepare(_ request: InferenceRequest) throws -> InferenceJob {
        let manifest = request.network.manifest
        let size = manifest.input.reduce(1, *)
        guard request.images.columns == size else {
            throw RefinementError(.shapeMismatch, "the images have \(request.images.columns) values each; the network takes \(manifest.input) = \(size)")
        }
        guard (1...InferenceJob.maxSamples).contains(request.images.rows) else {
            throw RefinementError(.shapeMismatch, "\(request.images.rows) images; a job takes 1...\(InferenceJob.maxSamples) (split larger sets into several jobs)")
        }
        // Consumers keep a job's images in memory (Float64): at most 256 MiB of them.
        guard request.images.elements.count <= Self.maxImageValues else {
            throw RefinementError(.shapeMismatch, "\(request.images.rows) images of \(size) values are more than \(Self.maxImageValues) values per job; split them into several jobs")
        }
        let partition = try QuantizedNetwork.inputPartition(manifest: manifest, maxMagnitude: request.images.maxMagnitude)
        // Builds what consumers will build: refuses a network whose exact sums could overflow,
        // and checks every image fits the input partition, before anything is published.
        let network = try QuantizedNetwork(manifest: manifest, tensors: request.network.tensors, inputPartition: partition)
        _ = try network.quantize(rows: request.images, 0..<request.images.rows)
        let classes = network.outputShape.reduce(1, *)
        if let why = request.rule.mismatch(outputs: classes) { throw EarlyExitError(.ruleMismatch, why) }
        let images = try store.register(request.images, name: nil, prepare: [])
        let now = wallClock()
        let job = InferenceJob(id: request.id ?? JobSubmitter.newID(), model: request.model, images: images,
                               samples: request.images.rows, inputPartition: partition.exponents,
                               resolutions: manifest.resolutions, classes: classes, exitRule: request.rule.text,
                               blockSize: max(1, min(request.blockSize, request.images.rows, InferenceTask.maxIndices,
                                                     InferenceJob.maxPartialLogits / max(classes, 1))),
                               createdMs: now, deadline: Deadline(after: request.deadline, from: now))
        try job.validate()
        return job
    }

    /// Publishes the first resolution of every sample, then the open record, then the deadline timer.
    /// In that order so that a producer failing part-way never leaves an open job with samples
    /// nobody was asked for: without the open record the aggregator drops the early answers
    /// after a grace period (and the caller sees the error and resubmits); without the deadline
    /// message the aggregator's local clock still answers at the deadline (+ its safety grace).
    public func publish(_ job: InferenceJob) async throws {
        try await Topology.declare(on: transport)
        let relative = job.relativeDeadlineMs
        let delay = Topology.delayQueue(milliseconds: relative)
        try await Topology.declareDelayQueue(delay, on: transport)
        // The first resolution the job's rule evaluates (1 unless it can decide nothing there).
        let first = try job.rule().ladder(resolutions: job.resolutions)[0]
        // One batch in this order, confirms awaited together (one round trip for the job).
        var batch = stride(from: 0, to: job.samples, by: job.blockSize).map { start in
            Publication(InferenceTask(job: job, resolution: first, indices: Array(start..<min(job.samples, start + job.blockSize)))
                            .encode(expiration: .milliseconds(relative)), Topology.taskRoute)
        }
        batch.append(Publication(try InferenceOpen(job: job).encode(), Topology.openRoute))
        batch.append(Publication(DeadlineMessage(job: job.id, deadline: job.deadline).encode(), Topology.delayRoute(delay)))
        try await transport.publish(batch)
    }
}
