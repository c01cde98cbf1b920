// `srproduce demo`: the whole system in one process — producer, consumers and aggregator over
// the in-memory transport (or RabbitMQ with --broker) — on a stream of mat-vec jobs.
import ArgumentParser
import Foundation
import Logging
import SRCLISupport
import SRCore
import SRKernels
import SRProtocol
import SRWorker
import SRAggregatorService
import SRSubmission
import SRStore
import SRTransport

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run producer, consumers and aggregator in this process on a stream of jobs.",
        discussion: """
            Registers a random n×n matrix, then submits a Poisson stream of mat-vec jobs with \
            mixed deadlines. Consumers take tasks by layer priority; the aggregator prints a line \
            per refinement and, at each deadline, emits the best result so far. A summary table \
            follows: resolution reached by the deadline, time to first resolution, and the final \
            error against the float64 product next to its guaranteed bound. Needs no broker; \
            with --broker the same runs through RabbitMQ.
            """)

    @Option(help: "Number of jobs.")
    var jobs: Int = 20

    @Option(help: "Consumers (workers) in this process.")
    var consumers: Int = 2

    @Option(name: .customShort("n"), help: "Matrix size (n×n).")
    var size: Int = 2048

    @Option(help: "Chunks per operand.")
    var chunks: Int = 3

    @Option(help: "Magnitude bits per chunk.")
    var bits: Int = 6

    @Option(help: "Mean job arrival rate, jobs per second (Poisson).")
    var rate: Double = 200

    @Option(help: ArgumentHelp("Relative deadlines, cycled over the jobs.", valueName: "d1,d2,…"))
    var deadlines: String = "5ms,20ms,100ms"

    @Option(name: .customLong("row-block"), help: "Rows per task (default: sized by compute, about 64 MiB of planes per task).")
    var rowBlock: Int?

    @Option(help: ArgumentHelp("Redundancy Ω from 1 (uncoded) to 9: each layer's K row-block tasks (see --row-block) go out as ⌈Ω·K⌉ coded tasks, any K of which give the exact layer, so a stalled consumer holds nothing back. At most 8 extra tasks per layer.", valueName: "Ω"))
    var redundancy: Double = 1

    @Option(name: .customLong("coded-layers"), help: ArgumentHelp("With --redundancy: code only the first L layers (default: all). 1 protects the first resolution against a stalled consumer for the price of one extra layer-0 pass.", valueName: "L"))
    var codedLayers: Int?

    @Option(help: ArgumentHelp("Run through RabbitMQ at this URL instead of the in-memory transport.", valueName: "url"))
    var broker: String?

    @Flag(help: "Print only the summary.")
    var quiet = false

    @Option(help: "Seed of the random operands and arrivals.")
    var seed: UInt64 = 1

    func validate() throws {
        guard (1...10_000).contains(jobs) else { throw ValidationError("--jobs must be in 1...10000") }
        guard redundancy.isFinite, redundancy >= 1, redundancy <= 9 else { throw ValidationError("--redundancy must be a number from 1 (uncoded) to 9, e.g. 1.5") }
        if let codedLayers, codedLayers < 1 { throw ValidationError("--coded-layers must be ≥ 1") }
        if codedLayers != nil && redundancy == 1 { throw ValidationError("--coded-layers needs --redundancy above 1") }
        guard (1...64).contains(consumers) else { throw ValidationError("--consumers must be in 1...64") }
        guard (1...16384).contains(size) else { throw ValidationError("-n must be in 1...16384") }
        guard rate.isFinite, rate >= 0.001, rate <= 100_000 else { throw ValidationError("--rate must be between 0.001 and 100000 jobs per second") }
        guard !parsedDeadlines.isEmpty else { throw ValidationError("--deadlines must list durations with units, e.g. 5ms,50ms") }
    }

    var parsedDeadlines: [Duration] {
        let parts = deadlines.split(separator: ",").map { DurationParsing.parse(String($0)) }
        return parts.contains { $0 == nil } ? [] : parts.map { $0! }
    }

    func run() async throws {
        BLAS.setThreadCount(1)
        var logger = Logger(label: "demo")
        logger.logLevel = .warning
        let storeDir = FileManager.default.temporaryDirectory.appendingPathComponent("sr-demo-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: storeDir) }
        let store = OperandStore(root: storeDir)
        var g = SplitMix64(seed: seed)
        let a = Matrix(rows: size, columns: size, elements: (0..<(size * size)).map { _ in Double.random(in: -1..<1, using: &g) })
        let digest = try store.register(a, name: "demo")
        let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: chunks, bits: bits)
        try store.ensureStatistics(digest: digest, partition: p)

        let (makeTransport, cleanup) = try await transports(logger: logger)
        let producer = try await makeTransport()
        let aggregator = AggregatorService(transport: try await makeTransport(), store: store, logger: logger)
        var workers: [TaskWorker] = []
        for i in 0..<consumers {
            var c = TaskWorker.Configuration()
            c.name = "worker-\(i + 1)"
            c.prefetch = 1
            workers.append(TaskWorker(transport: try await makeTransport(), store: store, configuration: c, logger: logger))
        }
        try await Topology.declare(on: producer)
        // Consumers load and prepare the registered matrix (and the parity blocks of a coded
        // plan) before the stream starts, as a long-running pool would have them cached. The
        // aggregator builds its secret row checksums of the matrix (docs/TRUST.md) before the
        // stream too; otherwise the first jobs would wait for them past their deadlines.
        let qProbe = try PartitionVector.fitted(maxMagnitude: 1, chunks: chunks, bits: bits)
        let probe = try JobSubmitter(transport: producer).plan(MatVecRequest(
            operand: .stored(digest: digest, rows: size, columns: size), vectors: Matrix(column: [Double](repeating: 0, count: size)),
            partitionA: p, partitionX: qProbe, schedule: try .bySignificance(chunksA: p.chunkCount, chunksX: qProbe.chunkCount),
            deadline: .seconds(1), rowBlock: rowBlock, id: "probe", redundancy: redundancy, codedLayers: codedLayers)).job
        for w in workers {
            try await w.preload(digest: digest, partitionA: p.exponents, partitionX: qProbe.exponents,
                                code: probe.code, blockRows: probe.rowBlock)
        }
        try aggregator.prepareChecksums(for: probe)

        let prefix = "demo\(seed)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"   // unique per run
        let ids = (0..<jobs).map { "\(prefix)-\(String(format: "%02d", $0 + 1))" }
        let watcher = try await OutputWatcher.watch(ids, on: producer)
        print("demo: \(jobs) jobs on a \(size)×\(size) matrix, p = \(p), \(consumers) consumers, "
              + (broker == nil ? "in-memory transport" : "RabbitMQ"))

        var summaries: [String: JobSummary] = [:]
        var vectors: [String: Matrix<Double>] = [:]
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await aggregator.run() }
            for w in workers { group.addTask { try await w.run() } }

            // The producer: a Poisson stream of jobs.
            let submitter = JobSubmitter(transport: producer)
            let clock = ContinuousClock()
            var next = clock.now
            for (i, id) in ids.enumerated() {
                try await clock.sleep(until: next)
                let x = Matrix(column: (0..<size).map { _ in Double.random(in: -1..<1, using: &g) })
                let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: chunks, bits: bits)
                let deadline = parsedDeadlines[i % parsedDeadlines.count]
                let request = MatVecRequest(operand: .stored(digest: digest, rows: size, columns: size), vectors: x, partitionA: p,
                                            partitionX: q, schedule: try .bySignificance(chunksA: p.chunkCount, chunksX: q.chunkCount),
                                            deadline: deadline, rowBlock: rowBlock, id: id, redundancy: redundancy, codedLayers: codedLayers)
                vectors[id] = x
                summaries[id] = JobSummary(deadlineMs: deadline.milliseconds)
                _ = try await submitter.submit(request)
                let gap = -log(Double.random(in: Double.ulpOfOne..<1, using: &g)) / rate
                next = next.advanced(by: .nanoseconds(Int64(gap * 1e9)))
            }

            // Follow outputs until every job has its final one.
            var finals = 0
            let limit = parsedDeadlines.map(\.milliseconds).max()! + 30_000
            while finals < jobs {
                let output = try await watcher.next(within: .milliseconds(Int64(limit)))
                guard let output, var s = summaries[output.job] else {
                    throw RunFailure("demo: outputs stopped arriving (\(finals)/\(jobs) jobs final)")
                }
                if !quiet { print(OutputFormatting.line(output, json: false)) }
                if output.resolution >= 1, s.firstMs == nil { s.firstMs = output.elapsedMs }
                if output.status != .partial {
                    finals += 1
                    s.final = output
                    let exact = OneShotProduct.product(a, vectors[output.job]!)
                    s.error = zip(exact.elements, output.values.elements).map { abs($0 - $1) }.max() ?? 0
                }
                summaries[output.job] = s
            }
            group.cancelAll()
        }
        await watcher.subscription.cancel()
        await cleanup()

        print("\njob                 deadline_ms  reached  status    first_ms  final_ms  max_error   max_bound")
        for id in ids {
            guard let s = summaries[id], let f = s.final else { continue }
            print(id.padding(toLength: 20, withPad: " ", startingAt: 0)
                  + String(format: "%11.1f  ", s.deadlineMs)
                  + "\(f.resolution)/\(f.of)".padding(toLength: 9, withPad: " ", startingAt: 0)
                  + f.status.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                  + (s.firstMs.map { String(format: "%8.2f", $0) } ?? "       -")
                  + String(format: "  %8.2f  %.3e  %.3e", f.elapsedMs, s.error, f.maxBound))
        }
        let completed = summaries.values.filter { $0.final?.status == .complete }.count
        let withinBound = summaries.values.filter { ($0.final.map { $0.maxBound >= $0.maxBound } ?? false) && $0.error <= ($0.final?.maxBound ?? 0) }.count
        let computed = workers.map { $0.snapshot.computed }.reduce(0, +)
        let skipped = workers.map { $0.snapshot.skippedPastDeadline }.reduce(0, +)
        print("\n\(completed)/\(jobs) complete, \(jobs - completed) emitted at their deadline; "
              + "error within bound for \(withinBound)/\(jobs); tasks computed \(computed), skipped past deadline \(skipped)")
    }

    /// A transport factory for each role and a cleanup: one in-memory broker shared by all
    /// roles, or a RabbitMQ connection per role.
    func transports(logger: Logger) async throws -> (@Sendable () async throws -> any Transport, @Sendable () async -> Void) {
        if let broker {
            let url = broker
            let opened = OpenedTransports()
            return ({ let t = try await Connector.connect(url, logger: logger); await opened.add(t); return t },
                    { await opened.closeAll() })
        }
        let memory = InMemoryBroker()
        let opened = OpenedTransports()
        return ({ let t = InMemoryTransport(broker: memory); await opened.add(t); return t },
                { await opened.closeAll(); memory.shutdown() })
    }
}

struct JobSummary {
    var deadlineMs: Double
    var firstMs: Double?
    var final: OutputMessage?
    var error: Double = 0
}

actor OpenedTransports {
    var all: [any Transport] = []
    func add(_ t: any Transport) { all.append(t) }
    func closeAll() async { for t in all { await t.close() } }
}
