// `srproduce infer-stream`: a Poisson stream of inference jobs of --batch images each, for the
// inference deadline curve (Benchmarks/deadline-curve-infer.sh); prints every output the client
// receives as a JSON line, timed by the client (submit start → output received).
import ArgumentParser
import Foundation
import Logging
import SRCLISupport
import SRCore
import SRFormats
import SRNeural
import SRProtocol
import SRSubmission
import SRStore
import SRTransport

struct InferStream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer-stream",
        abstract: "Submit a Poisson stream of inference jobs and print every output the client receives (JSON lines).",
        discussion: """
            The images (--images, --first, --count) are cut into jobs of --batch consecutive \
            images (a remainder smaller than --batch is left out). Every job is validated and its \
            images registered before the clock starts; at its Poisson arrival the job gets its \
            creation time and deadline and is published. Each output the aggregator sends back \
            (refinements and the final answer) is printed as one line:
              {"type":"output","job":J,"status":"partial"|"complete"|"deadline",
               "ms":client time since the job's submission,"elapsed_ms":aggregator's,
               "late_ms":…,"answers":[[sample,label,resolution,decided],…]}
            where sample is the index within job J (image first + J·batch + sample). Then one \
            {"type":"summary",…} line. Times are client-observed: from the moment the client \
            starts publishing the job to the moment the output reaches it.
            """)

    @Option(help: ArgumentHelp("A registered model (name or digest), or a model directory / .safetensors file (registered first).", valueName: "name|path"))
    var model: String

    @OptionGroup var imageOptions: ImageOptions

    @Option(help: "Images per job.")
    var batch: Int = 10

    @Option(help: "Mean arrival rate, jobs per second.")
    var rate: Double = 10

    @Option(parsing: .unconditional, help: ArgumentHelp("Relative deadline of each job, e.g. 40ms, 2s (units us, ms, s, min, h).", valueName: "duration"), transform: Duration.parsedArgument)
    var deadline: Duration

    @Option(name: .customLong("exit"), help: ArgumentHelp("Exit rule, as for `srproduce infer` (default: the model's first calibrated rule, else none).", valueName: "rule"))
    var exitRule: String?

    @Option(help: "Images per task at the first resolution (default: --batch, one task per job and resolution).")
    var block: Int?

    @Option(help: "Seed for the arrivals.")
    var seed: UInt64 = 1

    @OptionGroup var brokerOptions: BrokerOptions
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard (1...InferenceJob.maxSamples).contains(batch) else { throw ValidationError("--batch must be in 1...\(InferenceJob.maxSamples)") }
        guard rate.isFinite, rate >= 0.001, rate <= 100_000 else { throw ValidationError("--rate must be between 0.001 and 100000 jobs per second") }
        if let block, !(1...InferenceTask.maxIndices).contains(block) { throw ValidationError("--block must be in 1...\(InferenceTask.maxIndices)") }
    }

    func run() async throws {
        let store = storeOptions.operandStore
        let (digest, network) = try Infer.model(model, store: store)
        let file = try imageOptions.read()
        let rule = try Infer.rule(exitRule, manifest: network.manifest)
        let images = file.samples
        let count = images.rows / batch
        guard count >= 1 else {
            throw RunFailure("\(images.rows) images are fewer than one job of --batch \(batch): lower --batch or give more images (--count)")
        }
        let prefix = "i\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"   // unique per run
        // Validation, quantisation and registration of every job's images: before the clock.
        let preparer = InferenceSubmitter(transport: NoTransport(), store: store)
        let width = images.columns
        let jobs = try (0..<count).map { j in
            let slice = Matrix(rows: batch, columns: width, elements: Array(images.elements[(j * batch * width)..<((j + 1) * batch * width)]))
            return try preparer.prepare(InferenceRequest(model: digest, network: network, images: slice, rule: rule,
                                                         deadline: deadline, blockSize: block ?? batch, id: "\(prefix)-\(j)"))
        }
        let transport = try await Connector.connect(brokerOptions.url, logger: Logger(label: "srproduce"))
        do {
            try await stream(jobs, prefix: prefix, transport: transport)
        } catch {
            await transport.close()
            throw error
        }
        await transport.close()
    }

    /// Publishes on a Poisson schedule while a second task prints outputs as they arrive.
    func stream(_ jobs: [InferenceJob], prefix: String, transport: any Transport) async throws {
        let watcher = try await OutputWatcher.watch(nil, on: transport)   // job.#, filtered by prefix
        let submitter = InferenceSubmitter(transport: transport, store: storeOptions.operandStore)
        let clock = ContinuousClock()
        let starts = SubmitStarts()
        let origin = clock.now
        let count = jobs.count, limit = deadline.milliseconds + 30_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var finals = 0
                while finals < count {
                    let o = try await watcher.nextInference(within: .milliseconds(Int64(limit)))
                    let received = clock.now
                    guard let o else { throw RunFailure("outputs stopped arriving (\(finals)/\(count) final); is sraggregate running?") }
                    guard o.job.hasPrefix(prefix + "-"), let index = Int(o.job.dropFirst(prefix.count + 1)),
                          let start = await starts.start(of: index) else { continue }
                    if o.status != .partial { finals += 1 }
                    print(Self.line(o, index: index, ms: (received - start).milliseconds))
                }
            }
            var g = SplitMix64(seed: seed)
            var next = clock.now
            // Up to `maxInFlight` jobs await their confirms at once, so the schedule holds
            // when a confirm takes longer than the gap.
            let maxInFlight = 64
            try await withThrowingTaskGroup(of: Void.self) { publishing in
                var inFlight = 0
                for (index, prepared) in jobs.enumerated() {
                    try await clock.sleep(until: next)
                    await starts.record(index, clock.now)
                    var job = prepared
                    job.createdMs = WallClock.nowMs()
                    job.deadline = Deadline(after: deadline, from: job.createdMs)
                    if inFlight >= maxInFlight {
                        try await publishing.next()
                        inFlight -= 1
                    }
                    publishing.addTask { try await submitter.publish(job) }
                    inFlight += 1
                    next = next.advanced(by: .nanoseconds(Int64(-log(Double.random(in: Double.ulpOfOne..<1, using: &g)) / rate * 1e9)))
                }
                try await publishing.waitForAll()
            }
            let submitSpan = (clock.now - origin).milliseconds
            try await group.waitForAll()
            await watcher.subscription.cancel()
            print("{\"type\":\"summary\",\"jobs\":\(count),\"batch\":\(batch),\"images\":\(count * batch),\"prefix\":\"\(prefix)\","
                  + "\"rate\":\(rate),\"deadline_ms\":\(deadline.milliseconds),\"span_ms\":\(String(format: "%.1f", (clock.now - origin).milliseconds)),"
                  + "\"submit_span_ms\":\(String(format: "%.1f", submitSpan))}")
        }
    }

    static func line(_ o: InferenceOutput, index: Int, ms: Double) -> String {
        let answers = o.answers.map { "[\($0.sample),\($0.label),\($0.resolution),\($0.decided)]" }.joined(separator: ",")
        return "{\"type\":\"output\",\"job\":\(index),\"status\":\"\(o.status.rawValue)\",\"ms\":\(String(format: "%.3f", ms)),"
            + "\"elapsed_ms\":\(String(format: "%.3f", o.elapsedMs)),\"late_ms\":\(o.lateMs.map { String(format: "%.3f", $0) } ?? "null"),"
            + "\"answers\":[\(answers)]}"
    }

    /// When each job's submission started (the zero of its client-observed times).
    actor SubmitStarts {
        var starts: [Int: ContinuousClock.Instant] = [:]
        func record(_ index: Int, _ at: ContinuousClock.Instant) { starts[index] = at }
        func start(of index: Int) -> ContinuousClock.Instant? { starts[index] }
    }
}
