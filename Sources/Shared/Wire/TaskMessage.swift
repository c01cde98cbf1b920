// A task: one row block of one mini-job A_a·X_x (or of the one-shot product), for a consumer.

/// What a consumer needs to compute one partial product, and nothing about other tasks.
///
/// Body (little-endian): layered — X's chunk x as Int32, B × n (vector-major); one-shot — X as
/// Float64, B × n. When `matrix == "inline"`, A's rows of the block follow as Float64
/// (rowCount × n, row-major). Otherwise the consumer loads A from the operand store by digest.
public struct TaskMessage: Sendable, Equatable {
    public var job: String
    public var task: String
    public var mode: MatVecJob.Mode
    public var layer: Int
    public var chunkA: Int
    public var chunkX: Int
    public var rows: Range<Int>
    public var totalRows: Int
    public var columns: Int
    public var vectors: Int
    public var deadlineMs: Int64
    public var matrix: String
    public var partitionA: [Int]
    public var partitionX: [Int]
    /// Layered: X's chunk (B × n Int32 values); one-shot: empty.
    public var vectorChunk: [Int32]
    /// One-shot: X's values (B × n); layered: empty.
    public var vectorValues: [Double]
    /// Inline jobs: A's rows of this block (rowCount × n); otherwise empty.
    public var inlineRows: [Double]

    /// Largest inline payload accepted (A's rows of one task), so a job fits a broker message.
    public static let maxInlineBytes = 8 << 20

    public static let kind = "task"

    public func encode(priority: UInt8, expiration: Duration?) -> Message {
        var body: [UInt8]
        switch mode {
        case .layered: body = LittleEndian.bytes(vectorChunk)
        case .oneShot: body = LittleEndian.bytes(vectorValues)
        }
        if matrix == "inline" { body += LittleEndian.bytes(inlineRows) }
        return .wire(kind: Self.kind, headers: [
            Header.job: .string(job), Header.task: .string(task), Header.mode: .string(mode.rawValue),
            Header.layer: .int(Int64(layer)), Header.chunkA: .int(Int64(chunkA)), Header.chunkX: .int(Int64(chunkX)),
            Header.rowBegin: .int(Int64(rows.lowerBound)), Header.rowEnd: .int(Int64(rows.upperBound)),
            Header.rows: .int(Int64(totalRows)), Header.columns: .int(Int64(columns)), Header.vectors: .int(Int64(vectors)),
            Header.deadline: .int(deadlineMs), Header.matrix: .string(matrix),
            Header.partitionA: .string(partitionA.map(String.init).joined(separator: ",")),
            Header.partitionX: .string(partitionX.map(String.init).joined(separator: ",")),
        ], body: body, priority: priority, expiration: expiration, messageID: task)
    }

    public init(job: String, task: String, mode: MatVecJob.Mode, layer: Int, chunkA: Int, chunkX: Int,
                rows: Range<Int>, totalRows: Int, columns: Int, vectors: Int, deadlineMs: Int64, matrix: String,
                partitionA: [Int], partitionX: [Int], vectorChunk: [Int32], vectorValues: [Double], inlineRows: [Double]) {
        self.job = job
        self.task = task
        self.mode = mode
        self.layer = layer
        self.chunkA = chunkA
        self.chunkX = chunkX
        self.rows = rows
        self.totalRows = totalRows
        self.columns = columns
        self.vectors = vectors
        self.deadlineMs = deadlineMs
        self.matrix = matrix
        self.partitionA = partitionA
        self.partitionX = partitionX
        self.vectorChunk = vectorChunk
        self.vectorValues = vectorValues
        self.inlineRows = inlineRows
    }

    /// Decodes and validates; a `WireError` says what is wrong (it becomes `sr-dead-reason`).
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
        totalRows = try h.count(Header.rows, max: WireLimits.maxDimension)
        columns = try h.count(Header.columns, max: WireLimits.maxDimension)
        vectors = try h.count(Header.vectors, max: WireLimits.maxDimension)
        let begin = try h.count(Header.rowBegin), end = try h.count(Header.rowEnd)
        guard begin < end, end <= totalRows, columns >= 1, vectors >= 1 else {
            throw WireError("rows \(begin)..<\(end) of \(totalRows) × \(columns) columns × \(vectors) vectors is not a valid block")
        }
        _ = try WireLimits.product(end - begin, vectors, "task output size")
        rows = begin..<end
        deadlineMs = try h.int(Header.deadline)
        matrix = try h.string(Header.matrix)
        guard matrix == "inline" || OperandStore.isDigest(matrix) else {
            throw WireError("header \(Header.matrix) must be a SHA-256 digest or \"inline\"")
        }
        partitionA = try Self.partition(h.string(Header.partitionA), Header.partitionA)
        guard partitionA.count <= WireLimits.maxChunks + 1 else { throw WireError("header \(Header.partitionA) has too many chunks") }
        partitionX = try Self.partition(h.string(Header.partitionX), Header.partitionX)
        guard chunkA < partitionA.count - 1, chunkX < partitionX.count - 1 else {
            throw WireError("chunk indices \(chunkA), \(chunkX) exceed the partitions")
        }
        let vectorCount = try WireLimits.product(vectors, columns, "task vector block")
        let inlineCount = matrix == "inline" ? try WireLimits.product(rows.count, columns, "inline rows") : 0
        guard inlineCount * 8 <= Self.maxInlineBytes else {
            throw WireError("inline rows are \(inlineCount * 8) bytes; at most \(Self.maxInlineBytes) per task")
        }
        let elementBytes = mode == .layered ? 4 : 8
        guard message.body.count == vectorCount * elementBytes + inlineCount * 8 else {
            throw WireError("body is \(message.body.count) bytes; expected \(vectorCount * elementBytes + inlineCount * 8) for \(vectors) vector(s) of \(columns)" + (inlineCount > 0 ? " plus \(rows.count) inline rows" : ""))
        }
        let split = message.body.startIndex + vectorCount * elementBytes
        vectorChunk = mode == .layered ? LittleEndian.int32s(message.body[..<split]) : []
        vectorValues = mode == .oneShot ? LittleEndian.doubles(message.body[..<split]) : []
        inlineRows = LittleEndian.doubles(message.body[split...])
        if !vectorValues.allSatisfy(\.isFinite) || !inlineRows.allSatisfy(\.isFinite) {
            throw WireError("the task carries NaN or infinite values")
        }
        if mode == .layered {
            let limit = Int64(1) << (partitionX[chunkX] - partitionX[chunkX + 1])
            guard vectorChunk.allSatisfy({ Int64($0.magnitude) < limit }) else {
                throw WireError("x chunk values exceed the \(partitionX[chunkX] - partitionX[chunkX + 1]) bits of chunk \(chunkX)")
            }
        }
    }

    static func partition(_ s: String, _ key: String) throws(WireError) -> [Int] {
        let parts = s.split(separator: ",").map { Int($0) }
        guard parts.count >= 2, parts.allSatisfy({ $0 != nil }) else {
            throw WireError("header \(key) must be comma-separated integers like 4,0,-3")
        }
        let p = parts.map { $0! }
        do { _ = try PartitionVector(p) } catch { throw WireError("header \(key): \(error)") }
        return p
    }
}
