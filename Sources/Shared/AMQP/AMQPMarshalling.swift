// C values at the rabbitmq-c boundary: Swift values copied into C memory on the way out
// (CArena), C tables and properties copied into Swift values on the way in, within HeaderBounds.
internal import CSRRabbitMQ
import SRCore
import Foundation
import SRTransport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns the C memory handed to one rabbitmq-c call; everything is freed when the arena goes.
/// (Never `amqp_cstring_bytes` on a Swift string: its pointer dies with the temporary.)
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for b in blocks { free(b) } }

    private func allocate(_ count: Int) -> UnsafeMutableRawPointer {
        let p = malloc(max(count, 1))!
        blocks.append(p)
        return p
    }

    func bytes(_ b: [UInt8]) -> amqp_bytes_t {
        guard !b.isEmpty else { return amqp_bytes_t(len: 0, bytes: nil) }
        let p = allocate(b.count)
        b.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: b.count) }
        return amqp_bytes_t(len: b.count, bytes: p)
    }

    func bytes(_ s: String) -> amqp_bytes_t { bytes(Array(s.utf8)) }

    func table(_ entries: [(String, HeaderValue)]) -> amqp_table_t {
        guard !entries.isEmpty else { return amqp_empty_table }
        let p = allocate(MemoryLayout<amqp_table_entry_t>.stride * entries.count)
            .bindMemory(to: amqp_table_entry_t.self, capacity: entries.count)
        for (i, (key, value)) in entries.enumerated() {
            (p + i).initialize(to: amqp_table_entry_t(key: bytes(key), value: field(value)))
        }
        return amqp_table_t(num_entries: Int32(entries.count), entries: p)
    }

    func table(_ headers: [String: HeaderValue]) -> amqp_table_t {
        table(headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    /// .string → long string 'S', .bytes → byte array 'x', .int → long 'l', .double → 'd',
    /// .bool → 't', arrays 'A' and tables 'F' recursively.
    func field(_ value: HeaderValue) -> amqp_field_value_t {
        var f = amqp_field_value_t()
        switch value {
        case .string(let s):
            f.kind = kind(AMQP_FIELD_KIND_UTF8)
            f.value.bytes = bytes(s)
        case .bytes(let b):
            f.kind = kind(AMQP_FIELD_KIND_BYTES)
            f.value.bytes = bytes(b)
        case .int(let i):
            f.kind = kind(AMQP_FIELD_KIND_I64)
            f.value.i64 = i
        case .double(let d):
            f.kind = kind(AMQP_FIELD_KIND_F64)
            f.value.f64 = d
        case .bool(let b):
            f.kind = kind(AMQP_FIELD_KIND_BOOLEAN)
            f.value.boolean = b ? 1 : 0
        case .array(let items):
            f.kind = kind(AMQP_FIELD_KIND_ARRAY)
            if items.isEmpty {
                f.value.array = amqp_array_t(num_entries: 0, entries: nil)
            } else {
                let p = allocate(MemoryLayout<amqp_field_value_t>.stride * items.count)
                    .bindMemory(to: amqp_field_value_t.self, capacity: items.count)
                for (i, item) in items.enumerated() { (p + i).initialize(to: field(item)) }
                f.value.array = amqp_array_t(num_entries: Int32(items.count), entries: p)
            }
        case .table(let t):
            f.kind = kind(AMQP_FIELD_KIND_TABLE)
            f.value.table = table(t)
        }
        return f
    }

    /// x-max-priority, x-message-ttl and x-expires as 'l' (long; RabbitMQ accepts any integer
    /// kind and treats them as equivalent on re-declare); the dead-letter names as long strings.
    /// Always the same order and kinds, so every declare is identical.
    func queueArguments(_ q: QueueSpec) -> amqp_table_t {
        var entries: [(String, HeaderValue)] = []
        if let p = q.maxPriority { entries.append(("x-max-priority", .int(Int64(p)))) }
        if let ttl = q.messageTTL { entries.append(("x-message-ttl", .int(ttl.millisecondsRoundedUp))) }
        if let e = q.expires { entries.append(("x-expires", .int(e.millisecondsRoundedUp))) }
        if let dlx = q.deadLetterExchange { entries.append(("x-dead-letter-exchange", .string(dlx))) }
        if let dlrk = q.deadLetterRoutingKey { entries.append(("x-dead-letter-routing-key", .string(dlrk))) }
        return table(entries)
    }

    func properties(_ m: Message) -> amqp_basic_properties_t {
        var p = amqp_basic_properties_t()
        var flags: UInt32 = 0
        if let ct = m.contentType {
            flags |= UInt32(AMQP_BASIC_CONTENT_TYPE_FLAG)
            p.content_type = bytes(ct)
        }
        if !m.headers.isEmpty {
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
            p.headers = table(m.headers)
        }
        flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
        p.delivery_mode = m.persistent ? 2 : 1
        if let priority = m.priority {
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
            p.priority = priority
        }
        if let e = m.expiration {
            flags |= UInt32(AMQP_BASIC_EXPIRATION_FLAG)
            p.expiration = bytes(String(e.millisecondsRoundedUp))
        }
        if let id = m.messageID {
            flags |= UInt32(AMQP_BASIC_MESSAGE_ID_FLAG)
            p.message_id = bytes(id)
        }
        p._flags = flags
        return p
    }

    private func kind(_ k: amqp_field_value_kind_t) -> UInt8 { UInt8(k.rawValue) }
}

func decodeProperties(_ p: amqp_basic_properties_t) -> Message {
    let flags = p._flags
    func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
    var m = Message(persistent: false)
    if has(AMQP_BASIC_CONTENT_TYPE_FLAG) { m.contentType = p.content_type.swiftString }
    if has(AMQP_BASIC_HEADERS_FLAG) { m.headers = decodeHeaders(p.headers) }
    if has(AMQP_BASIC_DELIVERY_MODE_FLAG) { m.persistent = p.delivery_mode == 2 }
    if has(AMQP_BASIC_PRIORITY_FLAG) { m.priority = p.priority }
    if has(AMQP_BASIC_EXPIRATION_FLAG), let ms = Int64(p.expiration.swiftString) { m.expiration = .milliseconds(ms) }
    if has(AMQP_BASIC_MESSAGE_ID_FLAG) { m.messageID = p.message_id.swiftString }
    return m
}

/// Budget and verdict of one message's header decode (`HeaderBounds`), applied while the C
/// tables are taken apart so nothing beyond the bounds is ever recursed into.
struct HeaderDecoding {
    var budget = HeaderBounds.maxEntries
    var fault: String?
}

func decodeTable(_ t: amqp_table_t, depth: Int, state: inout HeaderDecoding) -> [String: HeaderValue] {
    var out: [String: HeaderValue] = [:]
    guard t.num_entries > 0, let entries = t.entries else { return out }
    for i in 0..<Int(t.num_entries) {
        guard state.budget > 0 else {
            state.fault = HeaderBounds.tooMany
            break
        }
        state.budget -= 1
        let e = entries[i]
        if let v = decodeField(e.value, depth: depth, state: &state) { out[e.key.swiftString] = v }
    }
    return out
}

func decodeHeaders(_ t: amqp_table_t) -> [String: HeaderValue] {
    var state = HeaderDecoding()
    var headers = decodeTable(t, depth: 0, state: &state)
    if let fault = state.fault { headers[HeaderBounds.malformedHeader] = .string(fault) }
    return headers
}

/// Other integer kinds (and timestamps) read as .int, floats and decimals as .double, void is
/// dropped, anything unknown becomes a descriptive .string.
func decodeField(_ f: amqp_field_value_t, depth: Int, state: inout HeaderDecoding) -> HeaderValue? {
    let v = f.value
    switch amqp_field_value_kind_t(rawValue: UInt32(f.kind)) {
    case AMQP_FIELD_KIND_BOOLEAN: return .bool(v.boolean != 0)
    case AMQP_FIELD_KIND_I8: return .int(Int64(v.i8))
    case AMQP_FIELD_KIND_U8: return .int(Int64(v.u8))
    case AMQP_FIELD_KIND_I16: return .int(Int64(v.i16))
    case AMQP_FIELD_KIND_U16: return .int(Int64(v.u16))
    case AMQP_FIELD_KIND_I32: return .int(Int64(v.i32))
    case AMQP_FIELD_KIND_U32: return .int(Int64(v.u32))
    case AMQP_FIELD_KIND_I64: return .int(v.i64)
    case AMQP_FIELD_KIND_U64, AMQP_FIELD_KIND_TIMESTAMP:
        return Int64(exactly: v.u64).map { .int($0) } ?? .string(String(v.u64))
    case AMQP_FIELD_KIND_F32: return .double(Double(v.f32))
    case AMQP_FIELD_KIND_F64: return .double(v.f64)
    case AMQP_FIELD_KIND_DECIMAL:
        var scale = 1.0
        for _ in 0..<Int(v.decimal.decimals) { scale *= 10 }
        return .double(Double(v.decimal.value) / scale)
    case AMQP_FIELD_KIND_UTF8:
        let b = v.bytes.swiftBytes
        return String(validating: b, as: UTF8.self).map { .string($0) } ?? .bytes(b)
    case AMQP_FIELD_KIND_BYTES: return .bytes(v.bytes.swiftBytes)
    case AMQP_FIELD_KIND_ARRAY:
        guard depth < HeaderBounds.maxDepth else { return tooDeep(&state) }
        guard v.array.num_entries > 0, let entries = v.array.entries else { return .array([]) }
        var out: [HeaderValue] = []
        for i in 0..<Int(v.array.num_entries) {
            guard state.budget > 0 else {
                state.fault = HeaderBounds.tooMany
                break
            }
            state.budget -= 1
            if let e = decodeField(entries[i], depth: depth + 1, state: &state) { out.append(e) }
        }
        return .array(out)
    case AMQP_FIELD_KIND_TABLE:
        guard depth < HeaderBounds.maxDepth else { return tooDeep(&state) }
        return .table(decodeTable(v.table, depth: depth + 1, state: &state))
    case AMQP_FIELD_KIND_VOID: return nil
    default: return .string("<AMQP field kind '\(Character(Unicode.Scalar(f.kind)))'>")
    }
}

/// A value nested beyond `HeaderBounds.maxDepth` is dropped and the message marked malformed.
func tooDeep(_ state: inout HeaderDecoding) -> HeaderValue? {
    state.fault = HeaderBounds.tooDeep
    return nil
}

extension amqp_bytes_t {
    /// A copy: the C buffer usually lives in a pool that is released soon after.
    var swiftBytes: [UInt8] {
        guard len > 0, let bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: len))
    }

    var swiftString: String { String(decoding: swiftBytes, as: UTF8.self) }
}
