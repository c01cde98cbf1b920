// A refinement published by the aggregator to sr.outputs.
import SRCore
import SRTransport

/// Status of an output: a new resolution, the last one, the best available at the deadline, or
/// `failed`: the job was refused or found faulty (header `sr-reason` says why; no values).
public enum OutputStatus: String, Sendable, Codable {
    case partial, complete, deadline, failed
}

/// Body: Float64 LE values (rows × B, row-major), then Float64 LE bounds (rows × B).
/// `resolution` is 1-based (k of R); 0 means no resolution completed before the deadline: the
/// values are then 0 and the bound is the a-priori bound of the whole product.
public struct OutputMessage: Sendable {
    public var job: String
    public var resolution: Int
    public var of: Int
    public var status: OutputStatus
    public var elapsedMs: Double
    public var values: Matrix<Double>
    public var bound: Matrix<Double>
    public var lateMs: Double?
    /// Why a `failed` job failed.
    public var reason: String?
    /// Whether every partial behind it passed its checksum and every statistic behind its bound
    /// was computed by the aggregator or the store (nil: not said, e.g. a failed output).
    public var verified: Bool?

    public static let kind = "output"

    /// The final output of a job the aggregator refuses or finds faulty: no values, a reason.
    public static func failed(job: String, of: Int, elapsedMs: Double, reason: String) -> OutputMessage {
        var o = OutputMessage(job: job, resolution: 0, of: of, status: .failed, elapsedMs: elapsedMs,
                              values: Matrix(rows: 0, columns: 0, elements: []), bound: Matrix(rows: 0, columns: 0, elements: []))
        o.reason = reason
        return o
    }

    public init(job: String, resolution: Int, of: Int, status: OutputStatus, elapsedMs: Double,
                values: Matrix<Double>, bound: Matrix<Double>, lateMs: Double? = nil) {
        self.job = job
        self.resolution = resolution
        self.of = of
        self.status = status
        self.elapsedMs = elapsedMs
        self.values = values
        self.bound = bound
        self.lateMs = lateMs
    }

    public var maxBound: Double { bound.elements.max() ?? 0 }

    /// Routing key: `job.<id>.final` for complete/deadline, else `job.<id>.resolution.<k>`.
    public var routingKey: String {
        status == .partial ? Topology.resolutionKey(job: job, resolution: resolution) : Topology.finalKey(job: job)
    }

    public func encode() -> Message {
        var headers: [String: HeaderValue] = [
            Header.job: .string(job), Header.resolution: .int(Int64(resolution)), Header.of: .int(Int64(of)),
            Header.status: .string(status.rawValue), Header.elapsed: .double(elapsedMs),
            Header.maxBound: .double(maxBound), Header.rows: .int(Int64(values.rows)),
            Header.vectors: .int(Int64(values.columns)),
        ]
        if let lateMs { headers[Header.lateMilliseconds] = .double(lateMs) }
        if let verified { headers[Header.verified] = .bool(verified) }
        if let reason { headers[Header.reason] = .string(String(reason.prefix(WireLimits.maxReasonLength))) }
        // Transient: outputs go to the watchers' exclusive queues, which die with the broker anyway.
        return .wire(kind: Self.kind, headers: headers,
                     body: LittleEndian.bytes(values.elements) + LittleEndian.bytes(bound.elements),
                     messageID: "\(job)/\(status == .partial ? "r\(resolution)" : "final")", persistent: false)
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.string(Header.job)
        resolution = try h.count(Header.resolution)
        of = try h.count(Header.of)
        guard let s = OutputStatus(rawValue: try h.string(Header.status)) else { throw WireError("unknown \(Header.status)") }
        status = s
        elapsedMs = try h.double(Header.elapsed)
        lateMs = h.headers[Header.lateMilliseconds]?.doubleValue
        reason = h.optionalString(Header.reason)
        if case .bool(let v)? = h.headers[Header.verified] { verified = v }
        let r = try h.count(Header.rows, max: WireLimits.maxDimension), nv = try h.count(Header.vectors, max: WireLimits.maxDimension)
        let count = try WireLimits.product(r, nv, "output size")
        guard message.body.count == 16 * count else { throw WireError("output body is \(message.body.count) bytes; expected \(16 * count)") }
        let all = LittleEndian.doubles(message.body[...])
        values = Matrix(rows: r, columns: nv, elements: Array(all[0..<(r * nv)]))
        bound = Matrix(rows: r, columns: nv, elements: Array(all[(r * nv)...]))
    }
}
