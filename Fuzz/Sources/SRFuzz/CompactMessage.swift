// The byte format the wire targets read a Message from: a compact header table then the body, so
// that mutations land on header values and body bytes rather than on an AMQP frame parser.
import SuccessiveRefinement

/// Layout (all lengths are counts of what follows; every field is optional at the end of the
/// input — an input that stops early yields what was read, with an empty body):
///
///     input := flags:u8  count:u8  entry×count  body…
///     entry := key value
///     key   := k:u8             k < names.count: names[k]; else len:u8 + len bytes (UTF-8)
///     value := tag:u8 payload   (tag mod 9)
///       0 string   len:u8 + bytes (invalid UTF-8 repaired)
///       1 int      i8, sign-extended (small numbers cost one byte)
///       2 int      i64 LE
///       3 double   f64 LE
///       4 bool     u8, low bit
///       5 bytes    len:u8 + bytes
///       6 array    n:u8 + value×n
///       7 table    n:u8 + (key value)×n
///       8 repeat   n:u16 LE + value: an array of n copies (reaches HeaderBounds.maxEntries cheaply)
///
/// flags bit 0 set: do not add `sr-version: 1` and `sr-kind: <the target's kind>`. When clear the
/// harness adds them where the table lacks them, so the fuzzer spends no bytes on them.
///
/// `names` is append-only: committed corpus files refer to names by index.
enum CompactMessage {
    static let names: [String] = [
        Header.version, Header.kind, Header.job, Header.task, Header.layer, Header.chunkA, Header.chunkX,
        Header.pairs, Header.width, Header.statisticsA, Header.rowBegin, Header.rowEnd, Header.rows,
        Header.columns, Header.vectors, Header.deadline, Header.matrix, Header.partitionA, Header.partitionX,
        Header.mode, Header.computeMicroseconds, Header.worker, Header.resolution, Header.of, Header.status,
        Header.elapsed, Header.maxBound, Header.deadReason, Header.reason, Header.malformed,
        Header.lateMilliseconds, Header.model, Header.images, Header.samples, Header.inputPartition,
        Header.classes, "x-death", "count", "queue",
    ]
    /// Deeper containers are read as empty: keeps the harness's own recursion bounded while going
    /// well past HeaderBounds.maxDepth.
    static let maxNesting = 64
    /// Values created in all (copies made by `repeat` included): a little over
    /// HeaderBounds.maxEntries, so "too many" stays reachable while no input spends its time (and
    /// ASan's malloc) building tables that only the first check reads.
    static let maxValues = 5_000

    // MARK: Decoding

    static func message(_ bytes: [UInt8], kind: String) -> Message {
        var r = Reader(bytes: bytes)
        let flags = r.byte() ?? 0
        let headers = r.table(depth: 0)
        var m = Message(body: Array(bytes[r.position...]), headers: headers)
        if flags & 1 == 0 {
            if m.headers[Header.version] == nil { m.headers[Header.version] = .int(Header.currentVersion) }
            if m.headers[Header.kind] == nil { m.headers[Header.kind] = .string(kind) }
        }
        return m
    }

    /// Only the header table (after the flags byte); for the HeaderBounds target.
    static func headers(_ bytes: [UInt8]) -> [String: HeaderValue] {
        var r = Reader(bytes: bytes)
        _ = r.byte()
        return r.table(depth: 0)
    }

    struct Reader {
        let bytes: [UInt8]
        var position = 0
        var budget = CompactMessage.maxValues

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func byte() -> UInt8? {
            guard position < bytes.count else { return nil }
            defer { position += 1 }
            return bytes[position]
        }

        mutating func take(_ n: Int) -> [UInt8]? {
            guard bytes.count - position >= n else { position = bytes.count; return nil }
            defer { position += n }
            return Array(bytes[position..<(position + n)])
        }

        mutating func word64() -> UInt64? {
            take(8).map { $0.reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        }

        mutating func key() -> String? {
            guard let k = byte() else { return nil }
            if Int(k) < CompactMessage.names.count { return CompactMessage.names[Int(k)] }
            guard let n = byte(), let b = take(Int(n)) else { return nil }
            return String(decoding: b, as: UTF8.self)
        }

        mutating func table(depth: Int) -> [String: HeaderValue] {
            guard let n = byte() else { return [:] }
            var out: [String: HeaderValue] = [:]
            for _ in 0..<n {
                guard let k = key(), let v = value(depth: depth) else { break }
                out[k] = v
            }
            return out
        }

        mutating func value(depth: Int) -> HeaderValue? {
            guard budget > 0, let tag = byte() else { return nil }
            budget -= 1
            switch tag % 9 {
            case 0: return take(Int(byte() ?? 0)).map { .string(String(decoding: $0, as: UTF8.self)) }
            case 1: return byte().map { .int(Int64(Int8(bitPattern: $0))) }
            case 2: return word64().map { .int(Int64(bitPattern: $0)) }
            case 3: return word64().map { .double(Double(bitPattern: $0)) }
            case 4: return byte().map { .bool($0 & 1 == 1) }
            case 5: return take(Int(byte() ?? 0)).map { .bytes($0) }
            case 6:
                guard let n = byte() else { return nil }
                guard depth < CompactMessage.maxNesting else { return .array([]) }
                var items: [HeaderValue] = []
                for _ in 0..<n {
                    guard let v = value(depth: depth + 1) else { break }
                    items.append(v)
                }
                return .array(items)
            case 7:
                guard depth < CompactMessage.maxNesting else { _ = byte(); return .table([:]) }
                return .table(table(depth: depth + 1))
            default:
                guard let lo = byte(), let hi = byte() else { return nil }
                guard depth < CompactMessage.maxNesting, let v = value(depth: depth + 1) else { return .array([]) }
                let size = CompactMessage.size(of: v)
                let n = min(Int(lo) | Int(hi) << 8, budget / size)
                budget -= n * size
                return .array(Array(repeating: v, count: n))
            }
        }
    }

    /// Values in `v`, itself included.
    static func size(of v: HeaderValue) -> Int {
        switch v {
        case .array(let items): 1 + items.reduce(0) { $0 + size(of: $1) }
        case .table(let t): 1 + t.values.reduce(0) { $0 + size(of: $1) }
        default: 1
        }
    }

    // MARK: Encoding (seeds)

    /// The inverse of `message(_:kind:)` for what the library's encoders produce. `sr-version`
    /// and `sr-kind` are left out when they are what the harness adds anyway.
    static func encode(_ m: Message, kind: String) -> [UInt8] {
        var headers = m.headers
        if headers[Header.version] == .int(Header.currentVersion) { headers[Header.version] = nil }
        if headers[Header.kind] == .string(kind) { headers[Header.kind] = nil }
        return [0] + table(headers) + m.body
    }

    static func table(_ t: [String: HeaderValue]) -> [UInt8] {
        precondition(t.count <= 255, "a compact table holds at most 255 entries")
        return [UInt8(t.count)] + t.keys.sorted().flatMap { key($0) + value(t[$0]!) }
    }

    static func key(_ k: String) -> [UInt8] {
        if let i = names.firstIndex(of: k) { return [UInt8(i)] }
        let b = Array(k.utf8)
        precondition(b.count <= 255, "header name too long for the compact format")
        return [0xFF, UInt8(b.count)] + b
    }

    static func value(_ v: HeaderValue) -> [UInt8] {
        func le(_ x: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: x >> (8 * $0)) } }
        func counted(_ b: [UInt8]) -> [UInt8] {
            precondition(b.count <= 255, "string or bytes too long for the compact format")
            return [UInt8(b.count)] + b
        }
        switch v {
        case .string(let s): return [0] + counted(Array(s.utf8))
        case .int(let i):
            if let small = Int8(exactly: i) { return [1, UInt8(bitPattern: small)] }
            return [2] + le(UInt64(bitPattern: i))
        case .double(let d): return [3] + le(d.bitPattern)
        case .bool(let b): return [4, b ? 1 : 0]
        case .bytes(let b): return [5] + counted(b)
        case .array(let items):
            precondition(items.count <= 255, "arrays of the compact format hold at most 255 values")
            return [6, UInt8(items.count)] + items.flatMap(value)
        case .table(let t): return [7] + table(t)
        }
    }
}
