// Header names of wire format version 1 and typed access to them.
import SRTransport

public enum Header {
    public static let version = "sr-version"
    public static let kind = "sr-kind"
    public static let job = Trace.jobHeader
    public static let task = "sr-task"
    public static let layer = "sr-layer"
    public static let chunkA = "sr-chunk-a"
    public static let chunkX = "sr-chunk-x"
    /// The chunk pairs of a task or partial, "a.x,a.x" (0-based); replaces sr-chunk-a/-x.
    public static let pairs = "sr-pairs"
    /// Bytes per element of a task's x chunks (1, 2 or 4; default 4) or a partial's values.
    public static let width = "sr-width"
    /// "store" on an open record whose A statistics the aggregator reads from the operand store.
    public static let statisticsA = "sr-statistics-a"
    /// Operands an open record carries after its statistics: "x" or "x,a" (inline A).
    public static let carries = "sr-carries"
    /// On outputs: "true" when every partial folded in passed its checksum and every
    /// statistic behind the bound was computed by the aggregator or the store.
    public static let verified = "sr-verified"
    /// A coded mini-job's code, "K/N": any K of its N tasks decode it (MiniJobCode).
    public static let code = "sr-code"
    /// Which of the N coded blocks a task or partial is (0-based; < K: the plain row block).
    public static let codedBlock = "sr-coded-block"
    public static let rowBegin = "sr-row-begin"
    public static let rowEnd = "sr-row-end"
    public static let rows = "sr-rows"
    public static let columns = "sr-columns"
    public static let vectors = "sr-vectors"
    public static let deadline = "sr-deadline-ms"
    public static let matrix = "sr-matrix"
    public static let partitionA = "sr-partition-a"
    public static let partitionX = "sr-partition-x"
    public static let mode = "sr-mode"
    public static let computeMicroseconds = "sr-compute-us"
    public static let worker = "sr-worker"
    public static let resolution = "sr-resolution"
    public static let of = "sr-of"
    public static let status = "sr-status"
    public static let elapsed = "sr-elapsed-ms"
    public static let maxBound = "sr-max-bound"
    public static let deadReason = "sr-dead-reason"
    /// Why a job failed (on a `failed` output).
    public static let reason = "sr-reason"
    /// Set by the AMQP transport when a message's header tables exceed its decode bounds (the
    /// value says which); every decoder refuses such a message.
    public static let malformed = HeaderBounds.malformedHeader
    public static let lateMilliseconds = "sr-late-ms"
    // Inference jobs.
    public static let model = "sr-model"
    public static let images = "sr-images"
    public static let samples = "sr-samples"
    public static let inputPartition = "sr-input-partition"
    public static let classes = "sr-classes"

    public static let currentVersion: Int64 = 1
}

/// Typed, validating reads of a message's headers; every failure names the header.
struct HeaderReader {
    let headers: [String: HeaderValue]

    init(_ message: Message, kind: String) throws(WireError) {
        headers = message.headers
        if let fault = headers[Header.malformed] {
            throw WireError("malformed headers: \(fault.stringValue ?? "rejected by the transport")")
        }
        guard let v = headers[Header.version]?.intValue else {
            throw WireError("missing header \(Header.version); this is not a successive-refinement message")
        }
        guard v == Header.currentVersion else {
            throw WireError("wire format version \(v) is not supported (this build speaks \(Header.currentVersion))")
        }
        let k = try string(Header.kind)
        guard k == kind else { throw WireError("expected \(Header.kind)=\(kind), got \(k)") }
    }

    func string(_ key: String) throws(WireError) -> String {
        guard let v = headers[key] else { throw WireError("missing header \(key)") }
        switch v {
        case .string(let s): return s
        case .bytes(let b): return String(decoding: b, as: UTF8.self)
        default: throw WireError("header \(key) must be a string")
        }
    }

    func int(_ key: String, in range: ClosedRange<Int64>? = nil) throws(WireError) -> Int64 {
        guard let v = headers[key] else { throw WireError("missing header \(key)") }
        guard let i = v.intValue else { throw WireError("header \(key) must be an integer") }
        if let range, !range.contains(i) { throw WireError("header \(key)=\(i) is outside \(range)") }
        return i
    }

    func count(_ key: String, max: Int = 1 << 30) throws(WireError) -> Int {
        Int(try int(key, in: 0...Int64(max)))
    }

    func double(_ key: String) throws(WireError) -> Double {
        guard let v = headers[key]?.doubleValue else { throw WireError("missing or non-numeric header \(key)") }
        return v
    }

    /// `sr-job`, checked once at the edge: 1–64 of [A-Za-z0-9_-] (it is a routing-key word).
    func jobID() throws(WireError) -> String {
        let id = try string(Header.job)
        guard MatVecJob.isValidID(id) else {
            throw WireError("header \(Header.job) must be 1–64 letters, digits, '-' or '_' (got \(id.count) characters)")
        }
        return id
    }

    /// `sr-task`: 1–\(WireLimits.maxTaskIDLength) of [A-Za-z0-9_./-]; it becomes a partial's
    /// `message_id`, which AMQP caps at 255 bytes.
    func taskID() throws(WireError) -> String {
        let id = try string(Header.task)
        guard (1...WireLimits.maxTaskIDLength).contains(id.utf8.count), id.unicodeScalars.allSatisfy({
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "_./-".unicodeScalars.contains($0)
        }) else {
            throw WireError("header \(Header.task) must be 1–\(WireLimits.maxTaskIDLength) letters, digits, '_', '.', '/' or '-' (got \(id.utf8.count) bytes)")
        }
        return id
    }

    func optionalString(_ key: String) -> String? {
        switch headers[key] {
        case .string(let s): s
        case .bytes(let b): String(decoding: b, as: UTF8.self)
        default: nil
        }
    }

    /// nil when absent; an error when present but not an integer.
    func optionalInt(_ key: String) throws(WireError) -> Int64? {
        guard headers[key] != nil else { return nil }
        return try int(key)
    }
}

extension Message {
    /// The `sr-kind` header (nil when absent): how roles tell message kinds apart on one queue.
    package var kind: String? {
        switch headers[Header.kind] {
        case .string(let s): s
        case .bytes(let b): String(decoding: b, as: UTF8.self)
        default: nil
        }
    }

    /// A message of wire format version 1 of the given kind. Persistent unless told otherwise:
    /// tasks, partials and outputs are transient (docs/WIRE.md, "Persistence").
    static func wire(kind: String, headers: [String: HeaderValue], body: [UInt8] = [],
                     priority: UInt8? = nil, expiration: Duration? = nil, messageID: String? = nil,
                     persistent: Bool = true) -> Message {
        var h = headers
        h[Header.version] = .int(Header.currentVersion)
        h[Header.kind] = .string(kind)
        return Message(body: body, headers: h, priority: priority, expiration: expiration,
                       messageID: messageID, contentType: "application/octet-stream", persistent: persistent)
    }
}
