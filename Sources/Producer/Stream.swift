// `srproduce stream`: a Poisson stream of mat-vec jobs against a registered matrix, for demos
// and end-to-end benchmarks; with --wait it reports time to first and to final resolution.
import ArgumentParser
import Foundation
import Logging
import SuccessiveRefinement

struct Stream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit a Poisson stream of jobs with random vectors; report latencies with --wait.",
        discussion: """
            Vectors are random in [-1, 1) (seeded). With --wait, prints one line per job when its \
            final output arrives and then the median and 95th percentile of the time to the first \
            resolution and to the final one. Run it twice, with and without --one-shot, on the \
            same pool to compare layered against one-shot jobs.
            """)

    @Option(help: "Mean arrival rate, jobs per second.")
    var rate: Double = 10

    @Option(help: "Number of jobs.")
    var count: Int = 20

    @Option(help: ArgumentHelp("Relative deadline of each job, e.g. 500ms.", valueName: "duration"))
    var deadline: Duration

    @Option(help: ArgumentHelp("A registered matrix name or digest.", valueName: "name"))
    var matrix: String

    @Option(name: .customLong("row-block"), help: "Rows per task.")
    var rowBlock: Int = 1024

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
        guard rowBlock >= 1 else { throw ValidationError("--row-block must be ≥ 1") }
    }

    func run() async throws {
        let store = storeOptions.operandStore
        let digest = try store.resolve(matrix)
        let a = try store.load(digest: digest)
        var g = SplitMix64(seed: seed)
        let probe = Matrix(column: (0..<a.columns).map { _ in Double.random(in: -1..<1, using: &g) })
        let (p, _, _) = try partition.partitions(a: a, x: probe)
        let decomposed = try ChunkedOperand(decomposing: a, partition: p)
        let transport = try await Connector.connect(brokerOptions.url, logger: Logger(label: "srproduce"))
        do {
            try await stream(a: a, digest: digest, p: p, decomposed: decomposed, transport: transport, g: &g)
        } catch {
            await transport.close()
            throw error
        }
        await transport.close()
    }

    func stream(a: Matrix<Double>, digest: String, p: PartitionVector, decomposed: ChunkedOperand,
                transport: any Transport, g: inout SplitMix64) async throws {
        try await Topology.declare(on: transport)
        let prefix = "s\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"   // unique per run, not per seed
        let ids = (0..<count).map { "\(prefix)-\($0)" }
        // One binding for the whole stream (job.#), filtered by this stream's prefix.
        let watcher = wait ? try await OutputWatcher.watch(nil, on: transport) : nil
        let submitter = JobSubmitter(transport: transport)
        let clock = ContinuousClock()
        var next = clock.now
        for id in ids {
            try await clock.sleep(until: next)
            let x = Matrix(column: (0..<a.columns).map { _ in Double.random(in: -1..<1, using: &g) })
            let (_, q, schedule) = try partition.partitions(a: a, x: x)
            let request = MatVecRequest(operand: .stored(digest: digest, matrix: a), vectors: x, partitionA: p, partitionX: q,
                                        schedule: schedule, deadline: deadline, rowBlock: rowBlock,
                                        mode: oneShot ? .oneShot : .layered, id: id)
            _ = try await submitter.submit(request, decomposed: decomposed)
            next = next.advanced(by: .nanoseconds(Int64(-log(Double.random(in: Double.ulpOfOne..<1, using: &g)) / rate * 1e9)))
        }
        print("submitted \(count) jobs (\(prefix)-0…\(count - 1))")
        guard let watcher else { return }
        var first: [String: Double] = [:], finals: [String: OutputMessage] = [:]
        let limit = DurationParsing.milliseconds(deadline) + 30_000
        while finals.count < count {
            let o = try await watcher.next(within: .milliseconds(Int64(limit)))
            guard let o else { throw RunFailure("outputs stopped arriving (\(finals.count)/\(count) final); is sraggregate running?") }
            guard o.job.hasPrefix(prefix + "-") else { continue }
            if o.resolution >= 1, first[o.job] == nil { first[o.job] = o.elapsedMs }
            if o.status != .partial {
                finals[o.job] = o
                print(OutputFormatting.line(o, json: json))
            }
        }
        await watcher.subscription.cancel()
        let firsts = first.values.sorted(), totals = finals.values.map(\.elapsedMs).sorted()
        let completed = finals.values.filter { $0.status == .complete }.count
        func pct(_ v: [Double], _ q: Double) -> String { v.isEmpty ? "-" : String(format: "%.2f", v[min(v.count - 1, Int(Double(v.count) * q))]) }
        print("first resolution ms: p50 \(pct(firsts, 0.5)) p95 \(pct(firsts, 0.95)); final ms: p50 \(pct(totals, 0.5)) p95 \(pct(totals, 0.95)); complete \(completed)/\(count)")
    }
}
