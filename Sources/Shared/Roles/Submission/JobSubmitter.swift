// The producer role as a library: plans and publishes mat-vec jobs, and follows their outputs.
import SRCoding
import SRCore
import SRProtocol
import SRTransport

/// A mat-vec request before planning: operands, partitioning, deadline.
public struct MatVecRequest: Sendable {
    public enum Operand: Sendable {
        /// A registered matrix: its digest and shape (from the store's summary). Its bound
        /// statistics under the request's partitionA must be in the store
        /// (`OperandStore.ensureStatistics`): the aggregator reads them there.
        case stored(digest: String, rows: Int, columns: Int)
        /// A small matrix carried in the tasks.
        case inline(Matrix<Double>)

        var shape: (rows: Int, columns: Int) {
            switch self {
            case .stored(_, let r, let c): (r, c)
            case .inline(let m): (m.rows, m.columns)
            }
        }
    }

    public var operand: Operand
    public var vectors: Matrix<Double>
    public var partitionA: PartitionVector
    public var partitionX: PartitionVector
    public var schedule: LayerSchedule
    public var deadline: Duration
    /// Rows per task; nil sizes tasks by their compute (`MatVecJob.automaticRowBlock`).
    public var rowBlock: Int?
    public var mode: MatVecJob.Mode
    public var id: String?
    /// Ω ≥ 1: each mini-job's K row blocks go out as ⌈Ω·K⌉ coded tasks, any K of which decode
    /// it (MiniJobCode), so up to ⌈Ω·K⌉ − K stalled tasks hold nothing back. 1: uncoded.
    public var redundancy: Double
    /// With redundancy: code only layers 0..<codedLayers (nil: every layer).
    public var codedLayers: Int?
    /// Ask for progress notices (tasks taken per layer) at most this often; nil: none.
    public var progressEvery: Duration?

    public init(operand: Operand, vectors: Matrix<Double>, partitionA: PartitionVector, partitionX: PartitionVector,
                schedule: LayerSchedule, deadline: Duration, rowBlock: Int? = nil, mode: MatVecJob.Mode = .layered, id: String? = nil,
                redundancy: Double = 1, codedLayers: Int? = nil) {
        self.operand = operand
        self.vectors = vectors
        self.partitionA = partitionA
        self.partitionX = partitionX
        self.schedule = schedule
        self.deadline = deadline
        self.rowBlock = rowBlock
        self.mode = mode
        self.id = id
        self.redundancy = redundancy
        self.codedLayers = codedLayers
    }
}

public struct JobSubmitter: Sendable {
    let transport: any Transport
    let wallClock: @Sendable () -> Int64
    let declared = DeclaredQueues()

    public init(transport: any Transport, wallClock: @escaping @Sendable () -> Int64 = WallClock.nowMs) {
        self.transport = transport
        self.wallClock = wallClock
    }

    /// Validates, plans and publishes; returns the job as the aggregator will see it.
    public func submit(_ request: MatVecRequest) async throws -> MatVecJob {
        let plan = try self.plan(request)
        try await JobPlanner.publish(plan, on: transport, declared: declared)
        return plan.job
    }

    /// Publishes a planned job (see `JobPlanner.publish`).
    public func publish(_ plan: JobPlan) async throws {
        try await JobPlanner.publish(plan, on: transport, declared: declared)
    }

    /// Plans a job: O(size of x + rows) for a registered matrix (its statistics come with the
    /// request); an inline matrix is decomposed here.
    public func plan(_ request: MatVecRequest) throws -> JobPlan {
        let (rows, columns) = request.operand.shape
        guard columns == request.vectors.rows else {
            throw LayeringError(.shapeMismatch, "the matrix is \(rows)×\(columns) but the vector has \(request.vectors.rows) elements; they must match")
        }
        let now = wallClock()
        let id = request.id ?? Self.newID()
        let digest: String, statistics: ChunkedOperand.Statistics?
        var inline: Matrix<Double>?
        switch request.operand {
        case .stored(let d, _, _):
            digest = d
            statistics = nil   // the aggregator reads them from the store

        case .inline(let m):
            digest = "inline"
            statistics = try ChunkedOperand(decomposing: m, partition: request.partitionA).statistics
            inline = m
        }
        let planes = request.schedule.layers.map(\.count).max() ?? 1
        let width = (0..<request.partitionA.chunkCount).map { ChunkPlane.storageBytes(forBits: request.partitionA.bits(ofChunk: $0)) }.max() ?? 1
        let automatic = MatVecJob.automaticRowBlock(rows: rows, columns: columns, mode: request.mode,
                                                    planesPerTask: planes, bytesPerElement: width)
        var rowBlock = request.rowBlock ?? automatic
        if inline != nil { rowBlock = min(rowBlock, max(1, TaskMessage.maxInlineBytes / (8 * columns))) }
        var job = MatVecJob(id: id, mode: request.mode, matrix: digest, rows: rows, columns: columns,
                            vectors: request.vectors.columns, partitionA: request.partitionA.exponents,
                            partitionX: request.partitionX.exponents,
                            layers: request.schedule.layers.map { $0.map { [$0.a, $0.x] } },
                            rowBlock: max(1, min(rowBlock, rows)), createdMs: now, deadline: Deadline(after: request.deadline, from: now))
        if let every = request.progressEvery {
            job.progressMs = Int(clamping: every.wholeMilliseconds)
        }
        if request.redundancy != 1 {
            let code: MiniJobCode
            do {
                code = try MiniJobCode(redundancy: request.redundancy, blocks: job.blockCount)
            } catch {
                throw WireError("--redundancy \(request.redundancy) over \(job.blockCount) row blocks of \(job.rowBlock) rows: \(error); choose a larger --row-block or a smaller --redundancy")
            }
            if code.isCoded {
                job.codedTasks = code.n
                if let c = request.codedLayers, c < job.layers.count { job.codedLayers = max(1, c) }
            }
        }
        // Fails early (with the accumulator's message) when the exact sums would not fit.
        _ = try ResolutionAccumulator(schedule: request.schedule, partitionA: request.partitionA,
                                      partitionX: request.partitionX, rows: 1, vectors: 1,
                                      innerDimension: columns, bounds: nil)
        return try JobPlanner.plan(job, statisticsA: statistics, vectors: request.vectors, inlineMatrix: inline, nowMs: now)
    }

    /// Fires a job's deadline now (`srproduce deadline JOB`).
    public func fireDeadline(job: String) async throws {
        try await Topology.declare(on: transport)
        try await transport.publish(DeadlineMessage(job: job, deadline: Deadline(epochMs: wallClock())).encode(), Topology.deadlineRoute)
    }

    static func newID() -> String {
        var g = SystemRandomNumberGenerator()
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return "j" + String((0..<11).map { _ in alphabet[Int(g.next() % UInt64(alphabet.count))] })
    }
}

/// Follows the outputs of jobs: an exclusive queue bound to `sr.outputs` (`job.<id>.#`).
public struct OutputWatcher: Sendable {
    public let subscription: Subscription

    /// Binds before the job is published, so no output can be missed. `jobs` nil: every job.
    public static func watch(_ jobs: [String]?, on transport: any Transport) async throws -> OutputWatcher {
        try await Topology.declare(on: transport)
        let queue = try await transport.declare(QueueSpec(name: "", durable: false, exclusive: true, autoDelete: true))
        for key in jobs.map({ $0.map { "job.\($0).#" } }) ?? ["job.#"] {
            try await transport.bind(BindingSpec(queue: queue, exchange: Topology.outputsExchange, routingKey: key))
        }
        return OutputWatcher(subscription: try await transport.subscribe(queue: queue, prefetch: 0))
    }

    /// The next mat-vec output, or nil when none arrives within `limit`.
    public func next(within limit: Duration) async throws -> OutputMessage? {
        try await within(limit) { try await next() }
    }

    /// What a watcher of mat-vec jobs sees: a refinement, or a progress notice (of jobs that
    /// asked for them).
    public enum Event: Sendable {
        case output(OutputMessage)
        case progress(ProgressMessage)
    }

    /// The next output or progress notice, or nil when none arrives within `limit`.
    public func nextEvent(within limit: Duration) async throws -> Event? {
        try await within(limit) {
            while let m = try await nextMessage() {
                if let o = try? OutputMessage(decoding: m) { return .output(o) }
                if let p = try? ProgressMessage(decoding: m) { return .progress(p) }
            }
            return nil
        }
    }

    /// The next mat-vec output (acked on receipt; outputs are informational copies).
    public func next() async throws -> OutputMessage? {
        while let m = try await nextMessage() {
            if let o = try? OutputMessage(decoding: m) { return o }
        }
        return nil
    }

    /// The next inference output, or nil when none arrives within `limit`.
    public func nextInference(within limit: Duration) async throws -> InferenceOutput? {
        try await within(limit) {
            while let m = try await nextMessage() {
                if let o = try? InferenceOutput(decoding: m) { return o }
            }
            return nil
        }
    }

    /// What a final says, for either job kind.
    public struct FinalSummary: Sendable {
        public var status: OutputStatus
        /// Mat-vec: the resolution reached (0: none); inference: the highest among the samples.
        public var resolution: Int
        public var of: Int
        public var elapsedMs: Double
        public var reason: String?
    }

    /// The next final output (complete, deadline or failed) of a mat-vec or inference job,
    /// or nil when none arrives within `limit`; refinements before it are skipped.
    public func nextFinal(within limit: Duration) async throws -> FinalSummary? {
        try await within(limit) {
            while let m = try await nextMessage() {
                if let o = try? OutputMessage(decoding: m), o.status != .partial {
                    return FinalSummary(status: o.status, resolution: o.resolution, of: o.of, elapsedMs: o.elapsedMs, reason: o.reason)
                }
                if let o = try? InferenceOutput(decoding: m), o.status != .partial {
                    return FinalSummary(status: o.status, resolution: o.answers.map(\.resolution).max() ?? 0, of: o.resolutions,
                                        elapsedMs: o.elapsedMs, reason: nil)
                }
            }
            return nil
        }
    }

    /// The next message of any kind, acked on receipt.
    func nextMessage() async throws -> Message? {
        for try await d in subscription.deliveries {
            try await subscription.ack(d)
            return d.message
        }
        return nil
    }

    func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T?) async throws -> T? {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }
}
