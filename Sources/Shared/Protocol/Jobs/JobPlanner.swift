// Turns a validated job into messages: its open record, its deadline timer and its tasks,
// layer by layer with priority decreasing by layer.
import SRCoding
import SRCore
import SRTransport
import Synchronization

/// Every message of one job, in publish order: open record, deadline, then tasks.
public struct JobPlan: Sendable {
    public let job: MatVecJob
    public let open: Message
    public let deadlineQueue: QueueSpec
    public let deadline: Message
    /// Tasks in layer order; each carries its priority and its expiration (the deadline).
    public let tasks: [Message]
}

public enum JobPlanner {
    /// Plans `job` (its fields already filled in) for a matrix whose bound statistics under
    /// job.partitionA are `statisticsA` (nil: the aggregator reads them from the operand store)
    /// and the vectors `x` (n × B). O(size of x): A itself is never read here. `inlineMatrix`, when given, is carried in the tasks instead
    /// of a store digest.
    public static func plan(_ job: MatVecJob, statisticsA: ChunkedOperand.Statistics?, vectors x: Matrix<Double>,
                            inlineMatrix: Matrix<Double>? = nil, nowMs: Int64) throws -> JobPlan {
        try job.validate()
        let q = try PartitionVector(job.partitionX)
        let chunkedX = try ChunkedOperand.vectors(x, partition: q)
        let schedule = try job.schedule()
        // x (and an inline A) travel with the record so the aggregator can check partials and
        // recompute every statistic itself (see OpenRecord).
        let record = OpenRecord(job: job, statisticsA: statisticsA, statisticsX: chunkedX.statistics,
                                vectors: x, inlineMatrix: inlineMatrix)
        let remaining = max(1, job.deadline.remainingMs(at: nowMs))
        let relative = max(1, job.relativeDeadlineMs)
        if let inlineMatrix {
            let bytes = job.rowBlock * inlineMatrix.columns * 8
            guard bytes <= TaskMessage.maxInlineBytes else {
                throw WireError("inline rows of one task are \(bytes) bytes (> \(TaskMessage.maxInlineBytes)); register the matrix or use smaller row blocks")
            }
        }
        func inlineRows(_ rows: Range<Int>) -> [Double] {
            guard let m = inlineMatrix else { return [] }
            return Array(m.elements[(rows.lowerBound * m.columns)..<(rows.upperBound * m.columns)])
        }
        var tasks: [Message] = []
        let base = TaskMessage(job: job.id, task: "", mode: job.mode, layer: 0, pairs: [], rows: 0..<1,
                               totalRows: job.rows, columns: job.columns, vectors: job.vectors, deadline: job.deadline,
                               matrix: job.matrix, partitionA: job.partitionA, partitionX: job.partitionX,
                               vectorChunks: [], vectorValues: [], inlineRows: [])
        switch job.mode {
        case .oneShot:
            let xt = x.transposed().elements
            for b in 0..<job.blockCount {
                var t = base
                t.task = "\(job.id)/oneshot/\(b)"
                t.rows = job.rowRange(block: b)
                t.vectorValues = xt
                t.inlineRows = inlineRows(t.rows)
                tasks.append(t.encode(priority: Topology.taskPriority(layer: 0), expiration: .milliseconds(remaining)))
            }
        case .layered:
            // One task per layer and row block: it carries x's chunk for each pair of the layer,
            // so a consumer passes over each A_i once and answers the whole layer in one partial.
            for (l, layer) in schedule.layers.enumerated() {
                var chunks = [Int64]()
                chunks.reserveCapacity(layer.count * job.vectors * job.columns)
                for pair in layer {
                    let plane = chunkedX.planes[pair.x]
                    for v in 0..<job.vectors {
                        for c in 0..<job.columns { chunks.append(plane[v, c]) }
                    }
                }
                // A coded job adds N − K parity tasks per layer (rows 0..<r: coded blocks of the
                // row-block height); any K of the N decode the layer (MiniJobCode).
                let code = job.code(layer: l)
                for b in 0..<code.n {
                    var t = base
                    t.task = b < code.k ? "\(job.id)/L\(l)/\(b)" : "\(job.id)/L\(l)/c\(b)"
                    t.layer = l
                    t.pairs = layer
                    t.rows = b < code.k ? job.rowRange(block: b) : 0..<job.rowBlock
                    t.vectorChunks = chunks
                    t.inlineRows = inlineRows(t.rows)
                    if code.isCoded {
                        t.code = code
                        t.codedBlock = b
                    }
                    tasks.append(t.encode(priority: Topology.taskPriority(layer: l), expiration: .milliseconds(remaining)))
                }
            }
        }
        let open = try record.encode()
        guard open.body.count <= WireLimits.maxMessageBytes - WireLimits.messageHeadroom else {
            throw WireError("job \(job.id): its open record (statistics and operands) would be \(open.body.count) bytes, more than a broker message holds; "
                            + (inlineMatrix != nil ? "register the matrix (srproduce register)" : "split x into smaller batches of vectors"))
        }
        return JobPlan(job: job, open: open, deadlineQueue: Topology.delayQueue(milliseconds: relative),
                       deadline: DeadlineMessage(job: job.id, deadline: job.deadline).encode(), tasks: tasks)
    }

    /// Publishes a plan: every task in layer order, then the open record and the deadline timer,
    /// as one batch whose confirms are awaited together. Tasks go first so consumers start at
    /// once (the aggregator holds partials that arrive before their open record). The delay
    /// queue is declared first — once per process and delay (`declared`) — so that if it cannot
    /// be, nothing of the job is out yet.
    public static func publish(_ plan: JobPlan, on transport: any Transport, declared: DeclaredQueues? = nil) async throws {
        if let declared {
            try await declared.ensure(plan.deadlineQueue, on: transport)
        } else {
            try await Topology.declareDelayQueue(plan.deadlineQueue, on: transport)
        }
        // One batch, in order: priority only orders a backlog, so when consumers are idle the
        // arrival order is the compute order.
        var batch = plan.tasks.map { Publication($0, Topology.taskRoute) }
        batch.append(Publication(plan.open, Topology.openRoute))
        batch.append(Publication(plan.deadline, Topology.delayRoute(plan.deadlineQueue)))
        try await transport.publish(batch)
    }
}

/// Queues this process has declared, so a stream of jobs does not declare its delay queue once
/// per job (a broker round trip each). A declaration is renewed when older than half the
/// queue's `x-expires`: publishing does not reset that timer, so an old declaration could
/// outlive the queue.
public final class DeclaredQueues: Sendable {
    private let declared = Mutex<[String: ContinuousClock.Instant]>([:])

    public init() {}

    public func ensure(_ queue: QueueSpec, on transport: any Transport) async throws {
        let now = ContinuousClock.now
        let renewAfter = (queue.expires ?? .seconds(3600)) / 2
        if let at = declared.withLock({ $0[queue.name] }), now - at < renewAfter { return }
        try await Topology.declareDelayQueue(queue, on: transport)
        declared.withLock { $0[queue.name] = now }
    }
}
