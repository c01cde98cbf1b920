// `srproduce infer`: classify images on the worker pool by successive refinement — a coarse
// label for every image early, refined only where the exit rule is not yet sure, and every
// image answered (best label, resolution reached, margin) when the deadline fires.
import ArgumentParser
import Foundation
import Logging
import SRCLISupport
import SRCore
import SRFormats
import SRKernels
import SRNeural
import SRProtocol
import SRWorker
import SRAggregatorService
import SRSubmission
import SRStore
import SRTransport

struct Infer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images with a registered network under a deadline, refining only uncertain images.",
        discussion: """
            Every image is evaluated exactly at the rule's first resolution (tasks of --block \
            images, priority by resolution); after each answer the aggregator applies the exit \
            rule per image and asks for the next resolution only for the undecided ones. A \
            resolution where the rule can decide nothing (threshold inf; -inf for entropy — as \
            calibration writes where too few images exit to pay for it) is skipped. When all are \
            decided — or the deadline fires — it publishes the final answer: for every image its \
            best label, the resolution reached (0 if none arrived in time) and its margin.

            Images: an IDX images file (e.g. data/fashion-mnist/t10k-images-idx3-ubyte, pixels \
            scaled to [0, 1]), a CIFAR-10 .bin batch, an MNIST .csv, or a .npy array (N × input \
            size, used as is). With labels (--labels, or inline in .bin/.csv) --wait reports accuracy.

            Exit rules: margin:T1,T2,… (top-1 minus top-2 logit ≥ T_r), entropy:T1,… (softmax \
            entropy ≤ T_r), stability:T1,… (same label as at r − 1 and margin ≥ T_r), \
            gray-zone:LOW/HIGH,… (one-logit networks: decided when the sigmoid is outside \
            [LOW, HIGH]), none (no exit: every image through every resolution to R, so a deadline \
            returns the best resolution reached), final (R alone: one pass, no intermediate \
            answers). One threshold per resolution, the last repeating. A family alone \
            (e.g. margin) takes the model's calibrated thresholds (`srproduce model calibrate`); \
            the default is the model's first calibrated rule, else none.

            --embedded runs the aggregator and --consumers workers in this process over the \
            in-memory transport: no broker needed.
            """)

    @Option(help: ArgumentHelp("A registered model (name or digest), or a model directory / .safetensors file (registered first).", valueName: "name|path"))
    var model: String

    @OptionGroup var imageOptions: ImageOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("Relative deadline with a unit, e.g. 1500ms, 5s, 1min (units us, ms, s, min, h).", valueName: "duration"), transform: Duration.parsedArgument)
    var deadline: Duration

    @Option(name: .customLong("exit"), help: ArgumentHelp("Exit rule: FAMILY:T1,T2,…, a family alone (the model's calibrated thresholds), none (every resolution, no exit) or final (R alone).", valueName: "rule"))
    var exitRule: String?

    @Option(help: "Images per task at the first resolution.")
    var block: Int = 100

    @Flag(help: "Wait for the refinements, print progress and the final answer.")
    var wait = false

    @Flag(help: "With --wait: one JSON object per refinement, then the final answer as JSON.")
    var json = false

    @Option(help: ArgumentHelp("With --wait: write the final answer (JSON) to this file.", valueName: "path"))
    var out: String?

    @Option(help: ArgumentHelp("Job id (default: generated).", valueName: "id"))
    var id: String?

    @Flag(help: "Run the aggregator and --consumers workers in this process over the in-memory transport (no broker; implies --wait).")
    var embedded = false

    @Option(help: "Workers in this process with --embedded.")
    var consumers: Int = 2

    @OptionGroup var brokerOptions: BrokerOptions
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard (1...InferenceTask.maxIndices).contains(block) else { throw ValidationError("--block must be in 1...\(InferenceTask.maxIndices)") }
        if (out != nil || json) && !(wait || embedded) { throw ValidationError("--out and --json need --wait") }
        guard (1...64).contains(consumers) else { throw ValidationError("--consumers must be in 1...64") }
        if let id, !MatVecJob.isValidID(id) { throw ValidationError("--id must be 1–64 letters, digits, '-' or '_'") }
    }

    func run() async throws {
        let store = storeOptions.operandStore
        let (digest, network) = try Self.model(model, store: store)
        let file = try imageOptions.read()
        let rule = try Self.rule(exitRule, manifest: network.manifest)
        let request = InferenceRequest(model: digest, network: network, images: file.samples, rule: rule,
                                       deadline: deadline, blockSize: block, id: id)
        let job = try InferenceSubmitter(transport: NoTransport(), store: store).prepare(request)   // before connecting
        var progress = InferenceProgress(job: job, labels: file.labels, classNames: network.manifest.classes)
        if embedded { return try await runEmbedded(job, store: store, &progress) }
        let transport = try await Connector.connect(brokerOptions.url, logger: Logger(label: "srproduce"))
        do {
            let watcher = wait ? try await OutputWatcher.watch([job.id], on: transport) : nil
            try await InferenceSubmitter(transport: transport, store: store).publish(job)
            announce(job)
            if let watcher { try await follow(watcher, &progress) }
        } catch {
            await transport.close()
            throw error
        }
        await transport.close()
    }

    func announce(_ job: InferenceJob) {
        if !json {
            print("job \(job.id): \(job.samples) images, R = \(job.resolutions), exit \(job.exitRule), deadline \(deadline)"
                  + (embedded ? ", \(consumers) in-process consumers" : ""))
        }
    }

    /// The whole pool in this process: aggregator and workers over one in-memory broker.
    func runEmbedded(_ job: InferenceJob, store: OperandStore, _ progress: inout InferenceProgress) async throws {
        BLAS.setThreadCount(1)
        var logger = Logger(label: "srproduce")
        logger.logLevel = .warning
        let broker = InMemoryBroker()
        defer { broker.shutdown() }
        let producer = InMemoryTransport(broker: broker)
        let aggregator = AggregatorService(transport: InMemoryTransport(broker: broker), store: store, logger: logger)
        let workers = (0..<consumers).map { i in
            var c = TaskWorker.Configuration()
            c.name = "worker-\(i + 1)"
            c.cacheBytes = (1 << 30) / consumers   // one GiB for the whole process
            return TaskWorker(transport: InMemoryTransport(broker: broker), store: store, configuration: c, logger: logger)
        }
        let services = [Task { try? await aggregator.run() }] + workers.map { w in Task { try? await w.run() } }
        defer { for s in services { s.cancel() } }
        let watcher = try await OutputWatcher.watch([job.id], on: producer)
        try await InferenceSubmitter(transport: producer, store: store).publish(job)
        announce(job)
        try await follow(watcher, &progress)
    }

    func follow(_ watcher: OutputWatcher, _ progress: inout InferenceProgress) async throws {
        let limit = deadline.milliseconds + 10_000
        while true {
            guard let output = try await watcher.nextInference(within: .milliseconds(Int64(limit))) else {
                throw RunFailure(embedded
                    ? "no final answer within the deadline + 10 s from the in-process pool"
                    : "no final answer within the deadline + 10 s; is sraggregate running and reachable at the same broker?")
            }
            progress.apply(output)
            if output.status == .partial {
                print(json ? progress.refinementJSON(output) : progress.refinementLine(output))
                continue
            }
            let report = try progress.finalJSON(output)
            if json { print(report) } else { print(progress.summary(output)) }
            if let out { try Data(report.utf8).write(to: URL(fileURLWithPath: out)) }
            break
        }
        await watcher.subscription.cancel()
    }

    /// A registered model by name or digest, or a model path registered now.
    static func model(_ reference: String, store: OperandStore) throws -> (String, Model) {
        // A bare name that is both a folder here and a registered model would silently pick
        // the folder (an older copy, say): make the user say which.
        if !reference.contains("/"), FileManager.default.fileExists(atPath: reference),
           let digest = try? store.resolveModel(reference) {
            throw ValidationError("'\(reference)' is both a model here (\(FileManager.default.currentDirectoryPath)/\(reference)) and the registered model \(digest.prefix(12))…; write ./\(reference) for the folder, or the digest for the registered one")
        }
        if FileManager.default.fileExists(atPath: reference) {
            let model = try Model.load(from: reference)
            return (try store.register(model: model, name: nil), model)
        }
        let digest = try store.resolveModel(reference)
        return (digest, try store.loadModel(digest: digest))
    }

    /// The rule of --exit: explicit, a family taken from the model's calibration, or the default.
    static func rule(_ text: String?, manifest: ModelManifest) throws -> ExitRule {
        let calibrated = manifest.exitRules ?? []
        guard let text else {
            return try calibrated.first.map { try ExitRule(parsing: $0) } ?? ExitRule(parsing: "none")
        }
        if text.contains(":") || text == "none" || text == "final" { return try ExitRule(parsing: text) }
        // A calibrated rule that never exits early is written as `final` (margin, entropy,
        // gray zone) or `none` (stability).
        let never = text == "stability" ? "none" : "final"
        guard let match = calibrated.first(where: { $0.hasPrefix(text + ":") || $0 == never }) else {
            throw ValidationError("""
                the model has no calibrated \(text) rule (it has: \(calibrated.isEmpty ? "none" : calibrated.joined(separator: "; "))); \
                give thresholds (--exit \(text):0.5,0.3) or calibrate with `srproduce model calibrate --rules \(text)`
                """)
        }
        return try ExitRule(parsing: match)
    }
}
