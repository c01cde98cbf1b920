// A job's open record: the job spec and the bound statistics, for the aggregator.
import SRCore
import SRTransport

/// Body: UInt32 LE length L, L bytes of JSON (MatVecJob), then Float64 LE arrays:
/// A's planeRowL1 (m_A × rows), planeRowMax (m_A × rows), valueRowL1 (rows), then the same
/// for X with B in place of rows. These let the aggregator bound every resolution.
/// With header `sr-statistics-a: store` (registered matrices) A's arrays are left out: the
/// aggregator reads them from the operand store, where `register` computed them — so a
/// producer cannot make a bound lie about A, and the record stays small.
/// With header `sr-carries: x` (or `x,a` for an inline matrix) the operands follow: x (n × B,
/// row-major), then the inline A (rows × n). The aggregator recomputes every statistic from
/// them (a record whose statistics disagree is refused) and checks each partial against them
/// (`PartialVerifier`), so neither a producer nor a consumer has to be trusted for a bound.
public struct OpenRecord: Sendable {
    public var job: MatVecJob
    /// nil: A's statistics come from the operand store (by digest and partition).
    public var statisticsA: ChunkedOperand.Statistics?
    public var statisticsX: ChunkedOperand.Statistics
    /// x (n × B), when the record carries it (`sr-carries`).
    public var vectors: Matrix<Double>?
    /// An inline A (rows × n), when the record carries it.
    public var inlineMatrix: Matrix<Double>?

    public static let kind = "open"
    static let statisticsFromStore = "store"

    public init(job: MatVecJob, statisticsA: ChunkedOperand.Statistics?, statisticsX: ChunkedOperand.Statistics,
                vectors: Matrix<Double>? = nil, inlineMatrix: Matrix<Double>? = nil) {
        self.job = job
        self.statisticsA = statisticsA
        self.statisticsX = statisticsX
        self.vectors = vectors
        self.inlineMatrix = inlineMatrix
    }

    public func encode() throws -> Message {
        let json = try JSONCoding.encode(job)
        var body = withUnsafeBytes(of: UInt32(json.count).littleEndian) { Array($0) } + json
        for s in [statisticsA, statisticsX].compactMap({ $0 }) {
            body += LittleEndian.bytes(s.planeRowL1.flatMap { $0 })
            body += LittleEndian.bytes(s.planeRowMax.flatMap { $0 })
            body += LittleEndian.bytes(s.valueRowL1)
        }
        var headers: [String: HeaderValue] = [Header.job: .string(job.id), Header.deadline: .int(job.deadline.epochMs)]
        if statisticsA == nil { headers[Header.statisticsA] = .string(Self.statisticsFromStore) }
        if let vectors {
            body += LittleEndian.bytes(vectors.elements)
            if let inlineMatrix { body += LittleEndian.bytes(inlineMatrix.elements) }
            headers[Header.carries] = .string(inlineMatrix == nil ? "x" : "x,a")
        }
        return .wire(kind: Self.kind, headers: headers, body: body, messageID: "\(job.id)/open")
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        let fromStore: Bool
        switch h.optionalString(Header.statisticsA) {
        case nil: fromStore = false
        case Self.statisticsFromStore?: fromStore = true
        case let other?: throw WireError("header \(Header.statisticsA) must be \"\(Self.statisticsFromStore)\" or absent, not '\(other)'")
        }
        let b = message.body
        guard b.count >= 4 else { throw WireError("open record body too short") }
        let length = Int(UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24)
        guard 4 + length <= b.count else { throw WireError("open record JSON length \(length) exceeds the body") }
        do {
            job = try JSONCoding.decode(MatVecJob.self, from: Array(b[4..<(4 + length)]))
        } catch {
            throw WireError("open record JSON: \(error)")
        }
        try job.validate()
        let ma = job.partitionA.count - 1, mx = job.partitionX.count - 1
        let r = job.rows, nv = job.vectors
        if fromStore && job.matrix == "inline" { throw WireError("job \(job.id): an inline matrix has no stored statistics; send them in the record") }
        let carriesX: Bool, carriesA: Bool
        switch h.optionalString(Header.carries) {
        case nil: (carriesX, carriesA) = (false, false)
        case "x"?: (carriesX, carriesA) = (true, false)
        case "x,a"?: (carriesX, carriesA) = (true, true)
        case let other?: throw WireError("header \(Header.carries) must be \"x\" or \"x,a\", not '\(other.prefix(40))'")
        }
        if carriesA && job.matrix != "inline" { throw WireError("job \(job.id): only an inline matrix travels in the open record") }
        let statisticsCount = (fromStore ? 0 : (2 * ma + 1) * r) + (2 * mx + 1) * nv
        // Products are within WireLimits (validate() checked rows × n and n × B).
        let operandCount = (carriesX ? job.columns * nv : 0) + (carriesA ? r * job.columns : 0)
        let expected = 8 * (statisticsCount + operandCount)
        guard b.count - 4 - length == expected else {
            throw WireError("open record statistics and operands are \(b.count - 4 - length) bytes; expected \(expected)")
        }
        let all = LittleEndian.doubles(b[(4 + length)...])
        let values = Array(all[..<statisticsCount])
        let operands = all[statisticsCount...]
        guard operands.allSatisfy(\.isFinite) else { throw WireError("open record operands must be finite") }
        vectors = carriesX ? Matrix(rows: job.columns, columns: nv, elements: Array(operands.prefix(job.columns * nv))) : nil
        inlineMatrix = carriesA ? Matrix(rows: r, columns: job.columns, elements: Array(operands.suffix(r * job.columns))) : nil
        var at = 0
        func take(_ n: Int) -> [Double] { defer { at += n }; return Array(values[at..<(at + n)]) }
        func stats(_ m: Int, _ rows: Int) -> ChunkedOperand.Statistics {
            let l1 = (0..<m).map { _ in take(rows) }
            let mx = (0..<m).map { _ in take(rows) }
            return ChunkedOperand.Statistics(planeRowL1: l1, planeRowMax: mx, valueRowL1: take(rows))
        }
        statisticsA = fromStore ? nil : stats(ma, r)
        statisticsX = stats(mx, nv)
        guard values.allSatisfy({ $0.isFinite && $0 >= 0 }) else { throw WireError("open record statistics must be finite and ≥ 0") }
    }
}

/// The deadline message: empty body; dead-lettered from a delay queue into sr.deadlines.
public struct DeadlineMessage: Sendable, Equatable {
    public var job: String
    public var deadline: Deadline
    public static let kind = "deadline"

    public init(job: String, deadline: Deadline) {
        self.job = job
        self.deadline = deadline
    }

    public func encode() -> Message {
        .wire(kind: Self.kind, headers: [Header.job: .string(job), Header.deadline: .int(deadline.epochMs)],
              messageID: "\(job)/deadline")
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.jobID()
        deadline = Deadline(epochMs: try h.int(Header.deadline))
    }
}
