// `srproduce matvec`: submits one mat-vec job and (with --wait) prints its refinements.
import ArgumentParser
import Foundation
import Logging
import SRCLISupport
import SRCore
import SRFormats
import SRProtocol
import SRSubmission
import SRTransport

extension ProgressMode: ExpressibleByArgument {}

struct MatVec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matvec",
        abstract: "Submit y = A·x with a deadline; optionally wait for and print each refinement.",
        discussion: """
            A and x are split into chunks (--chunks/--bits, or explicit partitions); every \
            mini-job A_i·x_j becomes row-block tasks published with priority by layer. With \
            --wait, each refinement is printed as it arrives (resolution k of R, status \
            partial|complete|deadline, elapsed ms, max error bound, "verified" when every \
            partial behind it passed the aggregator's checksum) and the last one is written \
            to --out. A job the aggregator refuses ends with status failed and the reason. \
            --one-shot runs the same job as a single float32 layer over the same row blocks: the \
            baseline for comparisons.

            On a terminal, --wait also shows the job's progress while it waits: one line, \
            redrawn in place, with the tasks taken per layer (of the K each layer needs) and the \
            time left (--progress never turns it off; --progress always shows it elsewhere too, \
            one line per notice, or {type: progress} objects with --json).

            Exit status with --wait: 0 when a result came (complete, or the best resolution at \
            the deadline); 1 on an error or a failed job; 3 when the deadline fired before any \
            resolution was computed ("no result by the deadline": the all-zero y is not written \
            to --out unless --out-empty is given).
            """)

    @Option(help: ArgumentHelp("A registered matrix name or digest, or a .npy file (small files travel inline; larger ones are registered).", valueName: "name|path"))
    var matrix: String

    @Option(help: ArgumentHelp("The vector x as a .npy file of shape (n,) — or (n, B) for a batch; - reads the .npy bytes from standard input.", valueName: "path|-"))
    var vector: String

    @Option(parsing: .unconditional, help: ArgumentHelp("Relative deadline with a unit, e.g. 1500ms, 2s, 1min (units us, ms, s, min, h).", valueName: "duration"), transform: Duration.parsedArgument)
    var deadline: Duration

    @Option(name: .customLong("row-block"), help: "Rows per task (default: sized by compute, about 64 MiB of chunk planes — or of float32 rows with --one-shot — per task).")
    var rowBlock: Int?

    @Option(help: ArgumentHelp("Redundancy Ω from 1 (uncoded) to 9: each layer's K row-block tasks (see --row-block) go out as ⌈Ω·K⌉ coded tasks, any K of which give the exact layer, so a stalled consumer holds nothing back. At most 8 extra tasks per layer. Layered jobs on registered matrices.", valueName: "Ω"))
    var redundancy: Double = 1

    @Option(name: .customLong("coded-layers"), help: ArgumentHelp("With --redundancy: code only the first L layers (default: all). 1 protects the first resolution against a stalled consumer for the price of one extra layer-0 pass.", valueName: "L"))
    var codedLayers: Int?

    @Flag(name: .customLong("one-shot"), help: "Run as one float32 layer (the baseline).")
    var oneShot = false

    @Flag(help: "Wait for the refinements and print each one.")
    var wait = false

    @Flag(help: "Print one JSON object per line, each with a type: first {type: job, job, tasks}, then per refinement {type: output, job, resolution, of, status, elapsed_ms, late_ms, bound, verified when known, and reason for a failed job}, and with --progress always {type: progress, job, elapsed_ms, layers: [[done, needed], …]}; late_ms < 0 is time to spare before the deadline.")
    var json = false

    @Option(help: ArgumentHelp("With --wait: write the last result (final or best at the deadline) to this .npy file; - writes the .npy bytes to standard output and the refinement lines to standard error (how y leaves a container: `--out - > y.npy`).", valueName: "path|-"))
    var out: String?

    @Option(help: ArgumentHelp("With --wait: show tasks taken per layer and time left while waiting — auto (on a terminal, without --json), always, or never.", valueName: "auto|always|never"))
    var progress: ProgressMode = .auto

    @Flag(name: .customLong("out-empty"), help: "Write --out even when nothing was computed by the deadline (an all-zero y with the a-priori bound).")
    var outEmpty = false

    @Option(help: ArgumentHelp("Job id (default: generated).", valueName: "id"))
    var id: String?

    @OptionGroup var partition: PartitionOptions
    @OptionGroup var brokerOptions: BrokerOptions
    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        if let rowBlock, rowBlock < 1 { throw ValidationError("--row-block must be ≥ 1") }
        guard redundancy.isFinite, redundancy >= 1, redundancy <= 9 else { throw ValidationError("--redundancy must be a number from 1 (uncoded) to 9, e.g. 1.5") }
        if let codedLayers, codedLayers < 1 { throw ValidationError("--coded-layers must be ≥ 1") }
        if codedLayers != nil && redundancy == 1 { throw ValidationError("--coded-layers needs --redundancy above 1") }
        if redundancy != 1 && oneShot { throw ValidationError("--redundancy applies to layered jobs, not --one-shot") }
        if out != nil && !wait { throw ValidationError("--out needs --wait (the result is written when it arrives)") }
        if progress == .always && !wait { throw ValidationError("--progress always needs --wait (progress is shown while waiting)") }
        if let id, !MatVecJob.isValidID(id) { throw ValidationError("--id must be 1–64 letters, digits, '-' or '_'") }
        if matrix == "-" && vector == "-" { throw ValidationError("only one of --matrix and --vector can read standard input (-)") }
    }

    func run() async throws {
        Trace.mark("matvec", "run")
        let store = storeOptions.operandStore
        let reference = try OperandLoading.matrix(matrix, store: store)
        let x = try OperandLoading.vector(vector)
        guard reference.columns == x.rows else {
            throw RunFailure("wrong shape: the matrix is \(reference.rows)×\(reference.columns) but the vector has \(x.rows) elements")
        }
        let (p, q, schedule) = try partition.partitions(maxA: reference.maxMagnitude, maxX: x.maxMagnitude)
        var request = MatVecRequest(operand: try reference.operand(partition: p, store: store), vectors: x, partitionA: p, partitionX: q, schedule: schedule,
                                    deadline: deadline, rowBlock: rowBlock, mode: oneShot ? .oneShot : .layered, id: id, redundancy: redundancy, codedLayers: codedLayers)
        // A terminal redraws a line ten times a second; plain lines come less often.
        if showsProgress { request.progressEvery = .milliseconds(progressInPlace ? 100 : 250) }
        let submitter = JobSubmitter(transport: NoTransport())
        let plan = try submitter.plan(request)   // validates everything before connecting
        Trace.mark("matvec", "planned")
        let transport = try await Connector.connect(brokerOptions.url, logger: Logger(label: "srproduce"))
        Trace.mark("matvec", "connected")
        do {
            try await submitAndFollow(plan, transport: transport)
        } catch {
            await transport.close()
            throw error
        }
        await transport.close()
    }

    /// Where lines go: standard output, or standard error when standard output carries y (--out -).
    var lines: FileHandle { out == "-" ? .standardError : .standardOutput }

    /// One line of output, unbuffered (in order with the progress display's writes).
    func say(_ line: String) {
        lines.write(Data((line + "\n").utf8))
    }

    /// Whether the lines go to a terminal: progress is then one line redrawn in place.
    var progressInPlace: Bool { isatty(lines.fileDescriptor) == 1 && !json }

    var showsProgress: Bool {
        switch progress {
        case .never: false
        case .auto: wait && progressInPlace
        case .always: wait
        }
    }

    func submitAndFollow(_ plan: JobPlan, transport: any Transport) async throws {
        // Declares the topology (once) and binds before the job is published: no output is missed.
        let watcher = wait ? try await OutputWatcher.watch([plan.job.id], on: transport) : nil
        if watcher == nil { try await Topology.declare(on: transport) }
        Trace.mark("matvec", "publishing")
        try await JobPlanner.publish(plan, on: transport)
        Trace.mark("matvec", "published")
        if json { say("{\"type\":\"job\",\"job\":\"\(plan.job.id)\",\"tasks\":\(plan.tasks.count)}") } else {
            say("job \(plan.job.id): \(plan.tasks.count) tasks, \(plan.job.resolutionCount) resolution(s), deadline \(deadline)")
        }
        guard let watcher else { return }
        let limit = deadline.milliseconds + 10_000
        let createdMs = plan.job.createdMs, handle = lines
        let display = showsProgress
            ? ProgressDisplay(job: plan.job.id, relativeDeadlineMs: Double(plan.job.relativeDeadlineMs), inPlace: progressInPlace,
                              json: json, clock: { Double(WallClock.nowMs() - createdMs) },
                              write: { handle.write(Data($0.utf8)) })
            : nil
        // Time left changes between notices: a terminal's line is redrawn ten times a second.
        let ticker = display.flatMap { d in
            d.inPlace ? Task { while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(100)); d.tick() } } : nil
        }
        defer { ticker?.cancel() }
        var last: OutputMessage?
        following: while true {
            let next = try await watcher.nextEvent(within: .milliseconds(Int64(limit)))
            switch next {
            case nil:
                display?.finish()
                throw RunFailure("no final output within the deadline + 10 s; is sraggregate running and reachable at the same broker?")
            case .progress(let p)?:
                display?.update(p)
            case .output(let output)?:
                let text = OutputFormatting.line(output, json: json, deadlineMs: deadline.milliseconds)
                // After the final there is nothing left to wait for: no status line below it.
                if output.status != .partial { display?.finish() }
                if let display { display.line(text, resolution: output.resolution) } else { say(text) }
                last = output
                if output.status != .partial { break following }
            }
        }
        display?.finish()
        await watcher.subscription.cancel()
        if let last, last.status == .failed {
            throw RunFailure("job \(last.job) failed: \(last.reason ?? "no reason given")")
        }
        guard let last else { return }
        if last.resolution == 0 && !outEmpty {
            let skipped = out.map { "; \($0 == "-" ? "standard output" : $0) not written (--out-empty writes the all-zero y anyway)" } ?? ""
            FileHandle.standardError.write(Data("srproduce: no result by the deadline for job \(last.job)\(skipped)\n".utf8))
            throw ExitCode(3)
        }
        if let out {
            let y = Npy.array(last.values, asVector: last.values.columns == 1)
            if out == "-" { FileHandle.standardOutput.write(Data(Npy.encode(y))) } else { try Npy.write(y, to: out) }
        }
        if last.resolution == 0 { throw ExitCode(3) }
    }
}

/// Planning needs no broker; this placeholder makes that explicit.
struct NoTransport: Transport {
    func fail() -> TransportError { TransportError(.closed, "planning does not use the broker") }
    func declare(_ exchange: ExchangeSpec) async throws { throw fail() }
    func declare(_ queue: QueueSpec) async throws -> String { throw fail() }
    func bind(_ binding: BindingSpec) async throws { throw fail() }
    func publish(_ message: Message, exchange: String, routingKey: String) async throws { throw fail() }
    func subscribe(queue: String, prefetch: Int) async throws -> Subscription { throw fail() }
    func messageCount(queue: String) async throws -> Int { throw fail() }
    func close() async {}
}

enum OutputFormatting {

    /// How late `o` came relative to its job's deadline (negative: early), in ms: the
    /// aggregator's figure when it gave one (deadline outputs), else from the client's deadline.
    static func lateMs(_ o: OutputMessage, deadlineMs: Double?) -> Double? {
        o.lateMs ?? deadlineMs.map { o.elapsedMs - $0 }
    }

    static func line(_ o: OutputMessage, json: Bool, deadlineMs: Double? = nil) -> String {
        let late = lateMs(o, deadlineMs: deadlineMs)
        if json {
            let reason = o.reason.map { ",\"reason\":\(JSONText.quoted($0))" } ?? ""
            let verified = o.verified.map { ",\"verified\":\($0)" } ?? ""
            let lateField = late.map { ",\"late_ms\":\(String(format: "%.3f", $0))" } ?? ""
            return "{\"type\":\"output\",\"job\":\"\(o.job)\",\"resolution\":\(o.resolution),\"of\":\(o.of),\"status\":\"\(o.status.rawValue)\",\"elapsed_ms\":\(String(format: "%.3f", o.elapsedMs))\(lateField),\"bound\":\(o.maxBound)\(verified)\(reason)}"
        }
        if o.status == .failed { return "\(o.job) failed: \(o.reason ?? "no reason given")" }
        let lateText = late.flatMap { $0 > 0 ? String(format: "  late %.1f ms", $0) : nil } ?? ""
        if o.resolution == 0 {
            return "\(o.job) no result by the deadline: nothing computed in time (resolution 0/\(o.of), "
                + String(format: "%.2f ms", o.elapsedMs) + lateText + ")"
        }
        let status = o.status.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
        return "\(o.job) resolution \(o.resolution)/\(o.of)  \(status) "
            + String(format: "%9.2f ms  bound %.3e", o.elapsedMs, o.maxBound) + (o.verified == true ? "  verified" : "") + lateText
    }
}
