// `srproduce stream`: a Poisson stream of mat-vec jobs against a registered matrix, for demos
// and end-to-end benchmarks; with --wait it reports time to first and to final resolution.
import ArgumentParser
import Foundation
import Logging
import SRCLISupport
import SRCore
import SRProtocol
import SRSubmission
import SRStore
import SRTransport

struct Stream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit a Poisson stream of jobs with random vectors; report latencies with --wait.",
        discussion: """
            Vectors are random in [-1, 1) (seeded). With --wait, prints one line per job when its \
            final output arrives and then the median and 95th percentile of the time to the first \
            resolution and to the final one. Times are client-observed: from the moment this \
            command starts to plan a job to the moment the output reaches it. With --json, each \
            line is an object with a "type" ("job" or "summary"). Run it twice, with and without \
            --one-shot, on the same pool to compare layered against one-shot jobs.
            """)

    @Option(help: "Mean arrival rate, jobs per second.")
    var rate: Double = 10

    @Option(help: "Number of jobs.")
    var count: Int = 20

    @Option(parsing: .unconditional, help: ArgumentHelp("Relative deadline of each job, e.g. 500ms, 2s (units us, ms, s, min, h).", valueName: "duration"), transform: Duration.parsedArgument)
    var deadline: Duration

    @Option(help: ArgumentHelp("A registered matrix name or digest.", valueName: "name"))
    var matrix: String

    @Option(name: .customLong("row-block"), help: "Rows per task (default: sized by compute).")
    var rowBlock: Int?

    @Option(help: ArgumentHelp("Redundancy Ω from 1 (uncoded) to 9: each layer's K row-block tasks (see --row-block) go out as ⌈Ω·K⌉ coded tasks, any K of which give the exact layer, so a stalled consumer holds nothing back. At most 8 extra tasks per layer.", valueName: "Ω"))
    var redundancy: Double = 1

    @Option(name: .customLong("coded-layers"), help: ArgumentHelp("With --redundancy: code only the first L layers (default: all). 1 protects the first resolution against a stalled consumer for the price of one extra layer-0 pass.", valueName: "L"))
    var codedLayers: Int?

    @Flag(name: .customLong("one-shot"), help: "Submit one-shot float32 jobs (the baseline).")
    var oneShot = false

    @Flag(help: "Wait for every job's final output and report latencies.")
    var wait = false

    @Flag(help: "Print per-job lines as JSON objects.")
    var json = false

    @Option(help: "Seed for vectors and arrivals.")
    var seed: UInt64 = 1

    @OptionGroup var partition: PartitionOptions
    @OptionGroup var brokerOptions: BrokerOptions
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard rate.isFinite, rate >= 0.001, rate <= 100_000 else { throw ValidationError("--rate must be between 0.001 and 100000 jobs per second") }
        guard (1...1_000_000).contains(count) else { throw ValidationError("--count must be in 1...1000000") }
        if let rowBlock, rowBlock < 1 { throw ValidationError("--row-block must be ≥ 1") }
        guard redundancy.isFinite, redundancy >= 1, redundancy <= 9 else { throw ValidationError("--redundancy must be a number from 1 (uncoded) to 9, e.g. 1.5") }
        if let codedLayers, codedLayers < 1 { throw ValidationError("--coded-layers must be ≥ 1") }
        if codedLayers != nil && redundancy == 1 { throw ValidationError("--coded-layers needs --redundancy above 1") }
        if redundancy != 1 && oneShot { throw ValidationError("--redundancy applies to layered jobs, not --one-shot") }
    }

    func run() async throws {
        let store = storeOptions.operandStore
        let digest = try store.resolve(matrix)
        let summary = try store.summary(digest: digest)
        // Fitted partitions: A's from its stored maximum, x's per job (random in [-1, 1)).
        let (p, _, _) = try partition.partitions(maxA: summary.maxMagnitude, maxX: 1)
        try store.ensureStatistics(digest: digest, partition: p)
        let operand = MatVecRequest.Operand.stored(digest: digest, rows: summary.rows, columns: summary.columns)
        let transport = try await Connector.connect(brokerOptions.url, logger: Logger(label: "srproduce"))
        do {
            try await stream(operand, columns: summary.columns, maxA: summary.maxMagnitude, transport: transport)
        } catch {
            await transport.close()
            throw error
        }
        await transport.close()
    }

    /// Submits on a Poisson schedule while a second task receives outputs as they arrive, so
    /// every time is the client's: submit start → output received.
    func stream(_ operand: MatVecRequest.Operand, columns n: Int, maxA: Double, transport: any Transport) async throws {
        try await Topology.declare(on: transport)
        let prefix = "s\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"   // unique per run, not per seed
        let ids = (0..<count).map { "\(prefix)-\($0)" }
        // One binding for the whole stream (job.#), filtered by this stream's prefix.
        let watcher = wait ? try await OutputWatcher.watch(nil, on: transport) : nil
        let submitter = JobSubmitter(transport: transport)
        let clock = ContinuousClock()
        let submitted = SubmitTimes()
        let origin = clock.now
        try await withThrowingTaskGroup(of: [String: JobTiming].self) { group in
            if let watcher {
                let limit = deadline.milliseconds + 30_000
                let count = self.count, json = self.json
                group.addTask {
                    var timings: [String: JobTiming] = [:]
                    var finals = 0
                    while finals < count {
                        let o = try await watcher.next(within: .milliseconds(Int64(limit)))
                        let received = clock.now
                if let o { Trace.mark(o.job, "client.output.r\(o.resolution)") }
                        guard let o else { throw RunFailure("outputs stopped arriving (\(finals)/\(count) final); is sraggregate running?") }
                        guard o.job.hasPrefix(prefix + "-"), let start = await submitted.start(of: o.job) else { continue }
                        let ms = (received - start).milliseconds
                        var t = timings[o.job] ?? JobTiming()
                        if o.resolution >= 1, t.firstMs == nil { t.firstMs = ms }
                        if o.status != .partial, t.final == nil {
                            t.final = o
                            t.finalMs = ms
                            finals += 1
                            print(Self.line(o, t, json: json))
                        }
                        timings[o.job] = t
                    }
                    return timings
                }
            }
            var g = SplitMix64(seed: seed)
            var next = clock.now
            // Publishing overlaps planning: up to `maxInFlight` jobs await their confirms at once,
            // so the arrival schedule is kept even when a confirm takes longer than the gap.
            let maxInFlight = 64
            try await withThrowingTaskGroup(of: Void.self) { publishing in
                var inFlight = 0
                for id in ids {
                    try await clock.sleep(until: next)
                    // x is the user's input: the client's clock starts once it is there.
                    let x = Matrix(column: (0..<n).map { _ in Double.random(in: -1..<1, using: &g) })
                    let start = clock.now
                    await submitted.record(id, start)
                    let (_, q, schedule) = try partition.partitions(maxA: maxA, maxX: x.maxMagnitude)
                    let request = MatVecRequest(operand: operand, vectors: x, partitionA: try partitionA(maxA), partitionX: q,
                                                schedule: schedule, deadline: deadline, rowBlock: rowBlock,
                                                mode: oneShot ? .oneShot : .layered, id: id, redundancy: redundancy, codedLayers: codedLayers)
                    Trace.mark(id, "plan.start")
                    let plan = try submitter.plan(request)
                    Trace.mark(id, "plan.done")
                    let planning = clock.now - start
                    if inFlight >= maxInFlight {
                        try await publishing.next()
                        inFlight -= 1
                    }
                    publishing.addTask {
                        try await submitter.publish(plan)
                        Trace.mark(id, "publish.confirmed")
                        await submitted.finished(clock.now - start, planning: planning)
                    }
                    inFlight += 1
                    next = next.advanced(by: .nanoseconds(Int64(-log(Double.random(in: Double.ulpOfOne..<1, using: &g)) / rate * 1e9)))
                }
                try await publishing.waitForAll()
            }
            let submitSpan = (clock.now - origin).milliseconds
            let perJob = await submitted.durations.map(\.milliseconds).sorted()
            let planning = await submitted.planning.map(\.milliseconds).sorted()
            if !json {
                print("submitted \(count) jobs (\(prefix)-0…\(count - 1)) in \(String(format: "%.0f", submitSpan)) ms; "
                      + "per job p50 \(Self.pct(perJob, 0.5)) ms to confirmed (planning \(Self.pct(planning, 0.5)) ms)")
            }
            guard watcher != nil, let timings = try await group.next() else { return }
            await watcher?.subscription.cancel()
            let span = (clock.now - origin).milliseconds
            print(Self.summary(Array(timings.values), count: count, spanMs: span, submitSpanMs: submitSpan, submitMs: perJob, json: json))
        }
    }

    /// The partition of A: explicit, or fitted to A's stored maximum.
    func partitionA(_ maxA: Double) throws -> PartitionVector {
        try partition.partitions(maxA: maxA, maxX: 1).0
    }

    struct JobTiming {
        var firstMs: Double?
        var finalMs: Double?
        var final: OutputMessage?
    }

    /// When each job's submission started (the zero of its client-observed times).
    actor SubmitTimes {
        var starts: [String: ContinuousClock.Instant] = [:]
        var durations: [Duration] = []
        var planning: [Duration] = []
        func record(_ id: String, _ at: ContinuousClock.Instant) { starts[id] = at }
        func start(of id: String) -> ContinuousClock.Instant? { starts[id] }
        func finished(_ d: Duration, planning p: Duration) {
            durations.append(d)
            planning.append(p)
        }
    }

    /// The q-quantile of sorted `v`, formatted; `empty` when there is none.
    static func pct(_ v: [Double], _ q: Double, empty: String = "-") -> String {
        v.isEmpty ? empty : String(format: "%.2f", v[min(v.count - 1, Int(Double(v.count) * q))])
    }

    static func line(_ o: OutputMessage, _ t: JobTiming, json: Bool) -> String {
        let first = t.firstMs.map { String(format: "%.3f", $0) } ?? "null"
        let final = String(format: "%.3f", t.finalMs ?? 0)
        if json {
            return "{\"type\":\"job\",\"job\":\"\(o.job)\",\"status\":\"\(o.status.rawValue)\",\"resolution\":\(o.resolution),\"of\":\(o.of),"
                + "\"first_ms\":\(first),\"final_ms\":\(final),\"late_ms\":\(o.lateMs.map { String(format: "%.3f", $0) } ?? "null"),\"bound\":\(o.maxBound)}"
        }
        return OutputFormatting.line(o, json: false) + "  (client: first \(first) ms, final \(final) ms)"
    }

    static func summary(_ timings: [JobTiming], count: Int, spanMs: Double, submitSpanMs: Double, submitMs: [Double], json: Bool) -> String {
        let firsts = timings.compactMap(\.firstMs).sorted(), finals = timings.compactMap(\.finalMs).sorted()
        let completed = timings.filter { $0.final?.status == .complete }.count
        if json {
            return "{\"type\":\"summary\",\"count\":\(count),\"complete\":\(completed),\"with_resolution\":\(firsts.count),"
                + "\"p50_first_ms\":\(pct(firsts, 0.5, empty: "null")),\"p95_first_ms\":\(pct(firsts, 0.95, empty: "null")),"
                + "\"p50_final_ms\":\(pct(finals, 0.5, empty: "null")),\"p95_final_ms\":\(pct(finals, 0.95, empty: "null")),"
                + "\"span_ms\":\(String(format: "%.1f", spanMs)),\"submit_span_ms\":\(String(format: "%.1f", submitSpanMs)),"
                + "\"p50_submit_ms\":\(pct(submitMs, 0.5, empty: "null"))}"
        }
        return "first resolution ms: p50 \(pct(firsts, 0.5)) p95 \(pct(firsts, 0.95)); final ms: p50 \(pct(finals, 0.5)) p95 \(pct(finals, 0.95)); complete \(completed)/\(count) (client-observed)"
    }
}
