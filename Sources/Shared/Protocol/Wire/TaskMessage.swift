// A task: one row block of one mini-job A_a·X_x (or of the one-shot product), for a consumer.
import SRCoding
import SRCore
import SRTransport

/// What a consumer needs to compute one partial product, and nothing about other tasks.
///
/// A layered task covers one layer's chunk pairs (`pairs`, header `sr-pairs` "a.x,a.x") for
/// one row block: the consumer reads each A_i once per pair it meets. Body (little-endian):
/// layered — for each pair in order, X's chunk x (B × n, vector-major) as signed integers of
/// `sr-width` bytes (1, 2 or 4; 4 when absent; the producer sends the narrowest that holds the
/// chunk's bits); one-shot — X as Float64, B × n. When `matrix == "inline"`, A's rows of the
/// block follow as Float64 (rowCount × n, row-major). Otherwise the consumer loads A from the
/// operand store by digest. A task with `sr-chunk-a`/`sr-chunk-x` instead of `sr-pairs` is a
/// one-pair task (what wire clients written for the first format send).
///
/// A coded mini-job's tasks carry `sr-code` "K/N" and `sr-coded-block` i. Block i < K is row
/// block i as usual; a parity block i ≥ K has rows 0..<r (r, the row-block height, rows per
/// coded block) and stands for Σ_b g_{i,b}·(row block b) — the consumer builds it from the
/// registered matrix (MiniJobCode.encode).
public struct TaskMessage: Sendable, Equatable {
    public var job: String
    public var task: String
    public var mode: MatVecJob.Mode
    public var layer: Int
    /// Layered: the mini-jobs of this task (one layer's pairs); one-shot: empty.
    public var pairs: [ChunkPair]
    public var rows: Range<Int>
    public var totalRows: Int
    public var columns: Int
    public var vectors: Int
    public var deadline: Deadline
    public var matrix: String
    public var partitionA: [Int]
    public var partitionX: [Int]
    /// Layered: X's chunk for each pair, pair-major (pairs × B × n); one-shot: empty.
    public var vectorChunks: [Int64]
    /// One-shot: X's values (B × n); layered: empty.
    public var vectorValues: [Double]
    /// Inline jobs: A's rows of this block (rowCount × n); otherwise empty.
    public var inlineRows: [Double]
    /// A coded mini-job's code (nil: uncoded).
    public var code: MiniJobCode?
    /// Which coded block this task is (meaningful when `code` is set).
    public var codedBlock: Int

    /// Whether this is a parity task: a combination of row blocks, not a row block.
    public var isParity: Bool { code.map { codedBlock >= $0.k } ?? false }

    /// Largest inline payload accepted (A's rows of one task), so a job fits a broker message.
    public static let maxInlineBytes = 8 << 20

    public static let kind = "task"

    /// Bytes per x-chunk element on the wire: the narrowest width for the widest chunk used.
    var xWidth: Int {
        let bits = pairs.map { partitionX[$0.x] - partitionX[$0.x + 1] }.max() ?? 31
        return LittleEndian.width(forMagnitude: (UInt64(1) << UInt64(min(bits, 62))) - 1)
    }

    /// Tasks and partials are transient (not written to disk by the broker): they are worth
    /// something only until their job's deadline, and a broker restart takes longer than most
    /// deadlines (docs/WIRE.md, "What a broker restart loses").
    public func encode(priority: UInt8, expiration: Duration?) -> Message {
        var body: [UInt8]
        var headers: [String: HeaderValue] = [
            Header.job: .string(job), Header.task: .string(task), Header.mode: .string(mode.rawValue),
            Header.layer: .int(Int64(layer)),
            Header.rowBegin: .int(Int64(rows.lowerBound)), Header.rowEnd: .int(Int64(rows.upperBound)),
            Header.rows: .int(Int64(totalRows)), Header.columns: .int(Int64(columns)), Header.vectors: .int(Int64(vectors)),
            Header.deadline: .int(deadline.epochMs), Header.matrix: .string(matrix),
            Header.partitionA: .string(partitionA.map(String.init).joined(separator: ",")),
            Header.partitionX: .string(partitionX.map(String.init).joined(separator: ",")),
        ]
        switch mode {
        case .layered:
            let width = xWidth
            body = LittleEndian.bytes(vectorChunks, width: width)
            headers[Header.pairs] = .string(Self.text(pairs))
            headers[Header.width] = .int(Int64(width))
        case .oneShot:
            body = LittleEndian.bytes(vectorValues)
        }
        if matrix == "inline" { body += LittleEndian.bytes(inlineRows) }
        if let code {
            headers[Header.code] = .string("\(code.k)/\(code.n)")
            headers[Header.codedBlock] = .int(Int64(codedBlock))
        }
        return .wire(kind: Self.kind, headers: headers, body: body, priority: priority, expiration: expiration,
                     messageID: task, persistent: false)
    }

    public init(job: String, task: String, mode: MatVecJob.Mode, layer: Int, pairs: [ChunkPair],
                rows: Range<Int>, totalRows: Int, columns: Int, vectors: Int, deadline: Deadline, matrix: String,
                partitionA: [Int], partitionX: [Int], vectorChunks: [Int64], vectorValues: [Double], inlineRows: [Double],
                code: MiniJobCode? = nil, codedBlock: Int = 0) {
        self.job = job
        self.task = task
        self.mode = mode
        self.layer = layer
        self.pairs = pairs
        self.rows = rows
        self.totalRows = totalRows
        self.columns = columns
        self.vectors = vectors
        self.deadline = deadline
        self.matrix = matrix
        self.partitionA = partitionA
        self.partitionX = partitionX
        self.vectorChunks = vectorChunks
        self.vectorValues = vectorValues
        self.inlineRows = inlineRows
        self.code = code
        self.codedBlock = codedBlock
    }

    /// Reads `sr-code` and `sr-coded-block` (both or neither): the code and the block index.
    static func code(_ h: HeaderReader) throws(WireError) -> (MiniJobCode?, Int) {
        guard let text = h.optionalString(Header.code) else {
            if h.headers[Header.codedBlock] != nil { throw WireError("header \(Header.codedBlock) without \(Header.code)") }
            return (nil, 0)
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]) else {
            throw WireError("header \(Header.code) must be K/N, like 2/3")
        }
        let code: MiniJobCode
        do { code = try MiniJobCode(k: k, n: n) } catch { throw WireError("header \(Header.code): \(error)") }
        let i = try h.count(Header.codedBlock, max: code.n - 1)
        return (code, i)
    }

    /// "a.x,a.x"
    static func text(_ pairs: [ChunkPair]) -> String {
        pairs.map { "\($0.a).\($0.x)" }.joined(separator: ",")
    }

    /// Parses "a.x,a.x": at most `WireLimits.maxChunks` pairs, no repeats, indices in range.
    static func pairs(_ text: String, chunksA: Int, chunksX: Int) throws(WireError) -> [ChunkPair] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
        guard (1...WireLimits.maxChunks).contains(items.count) else {
            throw WireError("header \(Header.pairs) must list 1...\(WireLimits.maxChunks) pairs like 0.1,1.0")
        }
        var out: [ChunkPair] = []
        for item in items {
            let ax = item.split(separator: ".", omittingEmptySubsequences: false)
            guard ax.count == 2, let a = Int(ax[0]), let x = Int(ax[1]), (0..<chunksA).contains(a), (0..<chunksX).contains(x) else {
                throw WireError("header \(Header.pairs): '\(item)' is not a pair a.x of chunk indices within the partitions")
            }
            let pair = ChunkPair(a: a, x: x)
            guard !out.contains(pair) else { throw WireError("header \(Header.pairs) repeats \(pair)") }
            out.append(pair)
        }
        return out
    }

    /// Decodes and validates; a `WireError` says what is wrong (it becomes `sr-dead-reason`).
    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.jobID()
        task = try h.taskID()
        guard let m = MatVecJob.Mode(rawValue: try h.string(Header.mode)) else {
            throw WireError("header \(Header.mode) must be layered or one-shot")
        }
        mode = m
        layer = try h.count(Header.layer, max: 1 << 16)
        totalRows = try h.count(Header.rows, max: WireLimits.maxDimension)
        columns = try h.count(Header.columns, max: WireLimits.maxDimension)
        vectors = try h.count(Header.vectors, max: WireLimits.maxDimension)
        let begin = try h.count(Header.rowBegin), end = try h.count(Header.rowEnd)
        guard begin < end, end <= totalRows, columns >= 1, vectors >= 1 else {
            throw WireError("rows \(begin)..<\(end) of \(totalRows) × \(columns) columns × \(vectors) vectors is not a valid block")
        }
        _ = try WireLimits.product(end - begin, vectors, "task output size")
        rows = begin..<end
        (code, codedBlock) = try Self.code(h)
        if code != nil, mode != .layered { throw WireError("header \(Header.code) applies to layered tasks only") }
        if let code, codedBlock >= code.k {
            // A parity block has the row-block height r, and K blocks of r rows cover the matrix.
            guard begin == 0, mode == .layered, (code.k - 1) * end < totalRows, totalRows <= code.k * end else {
                throw WireError("parity task \(codedBlock) of a \(code.k)/\(code.n) code must be layered with rows 0..<r, K·r covering the \(totalRows) rows; got \(begin)..<\(end)")
            }
        }
        deadline = Deadline(epochMs: try h.int(Header.deadline))
        matrix = try h.string(Header.matrix)
        guard matrix == "inline" || Digest.isValid(matrix) else {
            throw WireError("header \(Header.matrix) must be a SHA-256 digest or \"inline\"")
        }
        if let code, codedBlock >= code.k, matrix == "inline" { throw WireError("a parity task needs a registered matrix, not inline rows") }
        partitionA = try Self.partition(h.string(Header.partitionA), Header.partitionA)
        guard partitionA.count <= WireLimits.maxChunks + 1 else { throw WireError("header \(Header.partitionA) has too many chunks") }
        partitionX = try Self.partition(h.string(Header.partitionX), Header.partitionX)
        guard partitionX.count <= WireLimits.maxChunks + 1 else { throw WireError("header \(Header.partitionX) has too many chunks") }
        let chunksA = partitionA.count - 1, chunksX = partitionX.count - 1
        switch mode {
        case .oneShot:
            pairs = []
        case .layered:
            if let text = h.optionalString(Header.pairs) {
                pairs = try Self.pairs(text, chunksA: chunksA, chunksX: chunksX)
            } else {
                let a = try h.count(Header.chunkA, max: 64), x = try h.count(Header.chunkX, max: 64)
                guard a < chunksA, x < chunksX else { throw WireError("chunk indices \(a), \(x) exceed the partitions") }
                pairs = [ChunkPair(a: a, x: x)]
            }
        }
        // Its partial (one product per pair, up to 8 bytes per element) must fit one broker
        // message, or the consumer could only fail to publish it.
        _ = try WireLimits.product(try WireLimits.product(end - begin, vectors, "task output size"), max(1, pairs.count),
                                   limit: (WireLimits.maxMessageBytes - WireLimits.messageHeadroom) / 8,
                                   "task partial size (rows × vectors × pairs)")
        let width = mode == .layered ? Int(try h.optionalInt(Header.width) ?? 4) : 8
        guard [1, 2, 4].contains(width) || (mode == .oneShot && width == 8) else {
            throw WireError("header \(Header.width) must be 1, 2 or 4 (bytes per x-chunk element)")
        }
        let vectorCount = try WireLimits.product(try WireLimits.product(vectors, columns, "task vector block"), max(1, pairs.count),
                                                 "task vector chunks")
        let inlineCount = matrix == "inline" ? try WireLimits.product(rows.count, columns, "inline rows") : 0
        guard inlineCount * 8 <= Self.maxInlineBytes else {
            throw WireError("inline rows are \(inlineCount * 8) bytes; at most \(Self.maxInlineBytes) per task")
        }
        guard message.body.count == vectorCount * width + inlineCount * 8 else {
            throw WireError("body is \(message.body.count) bytes; expected \(vectorCount * width + inlineCount * 8) for \(max(1, pairs.count)) × \(vectors) vector(s) of \(columns) at \(width) bytes" + (inlineCount > 0 ? " plus \(rows.count) inline rows" : ""))
        }
        let split = message.body.startIndex + vectorCount * width
        vectorChunks = mode == .layered ? LittleEndian.integers(message.body[..<split], width: width) : []
        vectorValues = mode == .oneShot ? LittleEndian.doubles(message.body[..<split]) : []
        inlineRows = LittleEndian.doubles(message.body[split...])
        if !vectorValues.allSatisfy(\.isFinite) || !inlineRows.allSatisfy(\.isFinite) {
            throw WireError("the task carries NaN or infinite values")
        }
        let block = vectors * columns
        for (k, pair) in pairs.enumerated() {
            let bits = partitionX[pair.x] - partitionX[pair.x + 1]
            let limit = Int64(1) << min(bits, 62)
            guard vectorChunks[(k * block)..<((k + 1) * block)].allSatisfy({ $0.magnitude < limit }) else {
                throw WireError("x chunk values exceed the \(bits) bits of chunk \(pair.x)")
            }
        }
    }

    /// X's chunk for the k-th pair (B × n, vector-major).
    public func vectorChunk(_ k: Int) -> ArraySlice<Int64> {
        let block = vectors * columns
        return vectorChunks[(k * block)..<((k + 1) * block)]
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
