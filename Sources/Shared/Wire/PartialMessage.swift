// A partial result: the exact product of one task, from a consumer to the aggregator.

/// Body (little-endian): layered — Int64, rowCount × B (row-major), exact integers;
/// one-shot — Float64, rowCount × B.
public struct PartialMessage: Sendable, Equatable {
    public var job: String
    public var task: String
    public var mode: MatVecJob.Mode
    public var layer: Int
    public var chunkA: Int
    public var chunkX: Int
    public var rows: Range<Int>
    public var vectors: Int
    public var deadlineMs: Int64
    /// Kernel time in microseconds (for metrics).
    public var computeMicroseconds: Int64
    public var worker: String
    public var exact: [Int64]
    public var values: [Double]

    public static let kind = "partial"

    public init(for task: TaskMessage, computeMicroseconds: Int64, worker: String, exact: [Int64], values: [Double]) {
        job = task.job
        self.task = task.task
        mode = task.mode
        layer = task.layer
        chunkA = task.chunkA
        chunkX = task.chunkX
        rows = task.rows
        vectors = task.vectors
        deadlineMs = task.deadlineMs
        self.computeMicroseconds = computeMicroseconds
        self.worker = worker
        self.exact = exact
        self.values = values
    }

    public func encode() -> Message {
        .wire(kind: Self.kind, headers: [
            Header.job: .string(job), Header.task: .string(task), Header.mode: .string(mode.rawValue),
            Header.layer: .int(Int64(layer)), Header.chunkA: .int(Int64(chunkA)), Header.chunkX: .int(Int64(chunkX)),
            Header.rowBegin: .int(Int64(rows.lowerBound)), Header.rowEnd: .int(Int64(rows.upperBound)),
            Header.vectors: .int(Int64(vectors)), Header.deadline: .int(deadlineMs),
            Header.computeMicroseconds: .int(computeMicroseconds), Header.worker: .string(worker),
        ], body: mode == .layered ? LittleEndian.bytes(exact) : LittleEndian.bytes(values), messageID: task)
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.string(Header.job)
        task = try h.string(Header.task)
        guard let m = MatVecJob.Mode(rawValue: try h.string(Header.mode)) else {
            throw WireError("header \(Header.mode) must be layered or one-shot")
        }
        mode = m
        layer = try h.count(Header.layer, max: 1 << 16)
        chunkA = try h.count(Header.chunkA, max: 64)
        chunkX = try h.count(Header.chunkX, max: 64)
        let begin = try h.count(Header.rowBegin), end = try h.count(Header.rowEnd)
        guard begin < end else { throw WireError("empty row block \(begin)..<\(end)") }
        rows = begin..<end
        vectors = try h.count(Header.vectors, max: WireLimits.maxDimension)
        deadlineMs = try h.int(Header.deadline)
        computeMicroseconds = (try? h.int(Header.computeMicroseconds)) ?? 0
        worker = h.optionalString(Header.worker) ?? "?"
        let count = try WireLimits.product(rows.count, vectors, "partial size")
        guard message.body.count == count * 8 else {
            throw WireError("body is \(message.body.count) bytes; expected \(count * 8) for \(rows.count) rows × \(vectors) vectors")
        }
        exact = mode == .layered ? LittleEndian.int64s(message.body[...]) : []
        values = mode == .oneShot ? LittleEndian.doubles(message.body[...]) : []
        if !values.allSatisfy(\.isFinite) { throw WireError("the partial carries NaN or infinite values") }
    }
}
