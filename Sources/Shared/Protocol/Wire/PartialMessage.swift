// A partial result: the exact product of one task, from a consumer to the aggregator.
import SRCoding
import SRCore
import SRTransport

/// Body (little-endian): layered — for each pair of `sr-pairs` in order, rowCount × B exact
/// integers (row-major) of `sr-width` bytes (4 or 8: the narrowest that holds them); one-shot —
/// rowCount × B floats of `sr-width` bytes (4: the float32 results as computed; 8: Float64).
public struct PartialMessage: Sendable, Equatable {
    public var job: String
    public var task: String
    public var mode: MatVecJob.Mode
    public var layer: Int
    /// Layered: the task's chunk pairs, in the order of `exact`; one-shot: empty.
    public var pairs: [ChunkPair]
    public var rows: Range<Int>
    public var vectors: Int
    public var deadline: Deadline
    /// Kernel time in microseconds (for metrics).
    public var computeMicroseconds: Int64
    public var worker: String
    /// Layered: pair-major, each rowCount × B.
    public var exact: [Int64]
    public var values: [Double]
    /// A coded mini-job's code and this partial's coded block (copied from its task).
    public var code: MiniJobCode?
    public var codedBlock: Int

    public var isParity: Bool { code.map { codedBlock >= $0.k } ?? false }

    public static let kind = "partial"

    public init(for task: TaskMessage, computeMicroseconds: Int64, worker: String, exact: [Int64], values: [Double]) {
        job = task.job
        self.task = task.task
        mode = task.mode
        layer = task.layer
        pairs = task.pairs
        rows = task.rows
        vectors = task.vectors
        deadline = task.deadline
        self.computeMicroseconds = computeMicroseconds
        self.worker = worker
        self.exact = exact
        self.values = values
        code = task.code
        codedBlock = task.codedBlock
    }

    /// The exact product of the k-th pair (rowCount × B).
    public func product(_ k: Int) -> ArraySlice<Int64> {
        let block = rows.count * vectors
        return exact[(k * block)..<((k + 1) * block)]
    }

    public func encode() -> Message {
        let body: [UInt8], width: Int
        switch mode {
        case .layered:
            width = max(4, LittleEndian.width(forMagnitude: exact.reduce(0) { max($0, $1.magnitude) }))
            body = LittleEndian.bytes(exact, width: width)
        case .oneShot:
            // Float32 results widened to Double are exactly representable in 4 bytes.
            let narrow = values.allSatisfy { Double(Float($0)) == $0 }
            width = narrow ? 4 : 8
            body = narrow ? LittleEndian.bytes(values.map { Float($0) }) : LittleEndian.bytes(values)
        }
        var headers: [String: HeaderValue] = [
            Header.job: .string(job), Header.task: .string(task), Header.mode: .string(mode.rawValue),
            Header.layer: .int(Int64(layer)),
            Header.rowBegin: .int(Int64(rows.lowerBound)), Header.rowEnd: .int(Int64(rows.upperBound)),
            Header.vectors: .int(Int64(vectors)), Header.deadline: .int(deadline.epochMs),
            Header.computeMicroseconds: .int(computeMicroseconds), Header.worker: .string(worker),
            Header.width: .int(Int64(width)),
        ]
        if mode == .layered { headers[Header.pairs] = .string(TaskMessage.text(pairs)) }
        if let code {
            headers[Header.code] = .string("\(code.k)/\(code.n)")
            headers[Header.codedBlock] = .int(Int64(codedBlock))
        }
        return .wire(kind: Self.kind, headers: headers, body: body, messageID: task, persistent: false)
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.jobID()
        task = try h.taskID()
        guard let m = MatVecJob.Mode(rawValue: try h.string(Header.mode)) else {
            throw WireError("header \(Header.mode) must be layered or one-shot")
        }
        mode = m
        layer = try h.count(Header.layer, max: 1 << 16)
        if mode == .layered {
            let text = try h.string(Header.pairs)
            pairs = try TaskMessage.pairs(text, chunksA: WireLimits.maxChunks, chunksX: WireLimits.maxChunks)
        } else {
            pairs = []
        }
        let begin = try h.count(Header.rowBegin), end = try h.count(Header.rowEnd)
        guard begin < end else { throw WireError("empty row block \(begin)..<\(end)") }
        rows = begin..<end
        (code, codedBlock) = try TaskMessage.code(h)
        if code != nil, mode != .layered { throw WireError("header \(Header.code) applies to layered partials only") }
        vectors = try h.count(Header.vectors, max: WireLimits.maxDimension)
        deadline = Deadline(epochMs: try h.int(Header.deadline))
        computeMicroseconds = (try? h.int(Header.computeMicroseconds)) ?? 0
        worker = h.optionalString(Header.worker) ?? "?"
        let count = try WireLimits.product(try WireLimits.product(rows.count, vectors, "partial size"), max(1, pairs.count),
                                           "partial size")
        let width = Int(try h.optionalInt(Header.width) ?? 8)
        guard [4, 8].contains(width) else {
            throw WireError("header \(Header.width) must be 4 or 8")
        }
        guard message.body.count == count * width else {
            throw WireError("body is \(message.body.count) bytes; expected \(count * width) for \(max(1, pairs.count)) × \(rows.count) rows × \(vectors) vectors at \(width) bytes")
        }
        switch mode {
        case .layered:
            exact = LittleEndian.integers(message.body[...], width: width)
            values = []
        case .oneShot:
            exact = []
            values = width == 4 ? LittleEndian.floats(message.body[...]).map { Double($0) } : LittleEndian.doubles(message.body[...])
        }
        if !values.allSatisfy(\.isFinite) { throw WireError("the partial carries NaN or infinite values") }
    }
}
