// Turns a validated job into messages: its open record, its deadline timer and its tasks,
// layer by layer with priority decreasing by layer.

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
    /// Plans `job` (its fields already filled in) for the matrix `matrix` (decomposed with
    /// job.partitionA; used for the bound statistics) and the vectors `x` (n × B).
    /// `inlineMatrix`, when given, is carried in the tasks instead of a store digest.
    public static func plan(_ job: MatVecJob, matrix: ChunkedOperand, vectors x: Matrix<Double>,
                            inlineMatrix: Matrix<Double>? = nil, nowMs: Int64) throws -> JobPlan {
        try job.validate()
        let q = try PartitionVector(job.partitionX)
        let chunkedX = try ChunkedOperand.vectors(x, partition: q)
        let schedule = try job.schedule()
        let record = OpenRecord(job: job, statisticsA: matrix.statistics, statisticsX: chunkedX.statistics)
        let remaining = max(1, job.deadlineMs - nowMs)
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
        let base = TaskMessage(job: job.id, task: "", mode: job.mode, layer: 0, chunkA: 0, chunkX: 0, rows: 0..<1,
                               totalRows: job.rows, columns: job.columns, vectors: job.vectors, deadlineMs: job.deadlineMs,
                               matrix: job.matrix, partitionA: job.partitionA, partitionX: job.partitionX,
                               vectorChunk: [], vectorValues: [], inlineRows: [])
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
            for (l, layer) in schedule.layers.enumerated() {
                for pair in layer {
                    let plane = chunkedX.planes[pair.x]
                    var chunk = [Int32]()
                    chunk.reserveCapacity(job.vectors * job.columns)
                    for v in 0..<job.vectors {
                        for c in 0..<job.columns { chunk.append(Int32(plane[v, c])) }
                    }
                    for b in 0..<job.blockCount {
                        var t = base
                        t.task = "\(job.id)/\(pair.a).\(pair.x)/\(b)"
                        t.layer = l
                        t.chunkA = pair.a
                        t.chunkX = pair.x
                        t.rows = job.rowRange(block: b)
                        t.vectorChunk = chunk
                        t.inlineRows = inlineRows(t.rows)
                        tasks.append(t.encode(priority: Topology.taskPriority(layer: l), expiration: .milliseconds(remaining)))
                    }
                }
            }
        }
        return JobPlan(job: job, open: try record.encode(), deadlineQueue: Topology.delayQueue(milliseconds: relative),
                       deadline: DeadlineMessage(job: job.id, deadlineMs: job.deadlineMs).encode(), tasks: tasks)
    }

    /// Publishes a plan: open record, deadline timer, then every task (each confirmed).
    public static func publish(_ plan: JobPlan, on transport: any Transport) async throws {
        // The delay queue first: if it cannot be declared, nothing of the job is out yet.
        try await transport.declare(plan.deadlineQueue)
        try await transport.publish(plan.open, exchange: Topology.jobsExchange, routingKey: "open")
        try await transport.publish(plan.deadline, exchange: "", routingKey: plan.deadlineQueue.name)
        // One at a time, in layer order: priority only orders a backlog, so when consumers are
        // idle the arrival order is the compute order. (Publishing a window of tasks
        // concurrently was measured slower here: later layers overtook layer 0.)
        for t in plan.tasks { try await transport.publish(t, exchange: "", routingKey: Topology.tasksQueue) }
    }
}
