// safetensors files (the Hugging Face weights format): strict decoding with messages that say
// what is wrong, and an encoder whose output Python's `safetensors` loads unchanged.
import SRCore
import Foundation

/// Reads and writes safetensors files. Layout: an 8-byte little-endian header length N, N bytes
/// of JSON `{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`
/// (offsets relative to the data buffer), then the data buffer.
/// See https://huggingface.co/docs/safetensors
public enum Safetensors {
    /// The tensors of one file and its free-form string metadata.
    public struct File: Sendable, Equatable {
        public var tensors: [String: Tensor]
        public var metadata: [String: String]

        public init(tensors: [String: Tensor], metadata: [String: String] = [:]) {
            self.tensors = tensors
            self.metadata = metadata
        }
    }

    /// The reference implementation refuses headers above 100 MB; so do we, so that a corrupt
    /// length cannot make us allocate gigabytes.
    static let maximumHeaderLength: UInt64 = 100_000_000
    static let metadataKey = "__metadata__"
    static let supportedList = "F32, F64, F16, BF16"

    // MARK: Bytes

    /// Parses a complete safetensors image. F64, F16 and BF16 tensors are converted to Float
    /// (F64 is rounded to nearest). `source` (a path, usually) prefixes every error message.
    public static func decode(_ bytes: [UInt8], source: String = "<memory>") throws(SafetensorsError) -> File {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(SafetensorsError) in try decode(raw, source: source) }
        }.get()
    }

    /// Serializes `file` as float32 tensors: metadata first, then tensors sorted by name, data in
    /// the same order; the header is padded with spaces to a multiple of 8 bytes so that the data
    /// buffer is aligned, as Python's writer does.
    public static func encode(_ file: File) -> [UInt8] {
        precondition(file.tensors[metadataKey] == nil, "'\(metadataKey)' is reserved and cannot name a tensor")
        let names = file.tensors.keys.sorted()
        var json = "{"
        var entries: [String] = []
        if !file.metadata.isEmpty {
            let pairs = file.metadata.keys.sorted().map { "\(JSONText.quoted($0)):\(JSONText.quoted(file.metadata[$0]!))" }
            entries.append("\(JSONText.quoted(metadataKey)):{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for name in names {
            let tensor = file.tensors[name]!
            let end = offset + tensor.count * 4
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            entries.append("\(JSONText.quoted(name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        json += entries.joined(separator: ",") + "}"
        var header = Array(json.utf8)
        header += repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8)

        let total = 8 + header.count + offset
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: UInt64(header.count).littleEndian, toByteOffset: 0, as: UInt64.self)
            UnsafeMutableRawBufferPointer(rebasing: raw[8..<(8 + header.count)]).copyBytes(from: header)
            var position = 8 + header.count
            for name in names {
                for value in file.tensors[name]!.values {
                    raw.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: position, as: UInt32.self)
                    position += 4
                }
            }
            initialized = total
        }
    }

    // MARK: Files

    /// Reads and decodes the file at `path` (memory-mapped when possible, so a large model is
    /// not held twice while decoding).
    public static func read(contentsOf path: String) throws(SafetensorsError) -> File {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            throw SafetensorsError(.io, "\(path): cannot read: \(OSReason.of(error))")
        }
        return try data.withUnsafeBytes { raw in
            Result { () throws(SafetensorsError) in try decode(raw, source: path) }
        }.get()
    }

    /// Writes `file` to `path` atomically (a temporary file in the same directory is renamed
    /// over `path`), so a reader never sees half a model.
    public static func write(_ file: File, to path: String) throws(SafetensorsError) {
        try writeAtomically(encode(file), to: path)
    }

    package static func writeAtomically(_ bytes: [UInt8], to path: String) throws(SafetensorsError) {
        do {
            try AtomicFile.write(bytes, to: path)
        } catch {
            throw SafetensorsError(.io, "\(path): cannot write: \(error.reason)")
        }
    }

    // MARK: Decoding

    /// One header entry, as the JSON states it (not yet checked).
    private struct Entry: Decodable {
        var dtype: String
        var shape: [Int]
        var data_offsets: [Int]
    }

    private struct Header: Decodable {
        var metadata: [String: String] = [:]
        var entries: [(name: String, entry: Entry)] = []

        private struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            for key in container.allKeys {
                if key.stringValue == Safetensors.metadataKey {
                    metadata = try container.decode([String: String].self, forKey: key)
                } else {
                    entries.append((key.stringValue, try container.decode(Entry.self, forKey: key)))
                }
            }
        }
    }

    /// A checked entry: where its bytes are and how to read them.
    private struct Layout {
        var name: String
        var dtype: DType
        var shape: [Int]
        var count: Int
        var begin: Int
        var end: Int
    }

    private enum DType: String {
        case f32 = "F32", f64 = "F64", f16 = "F16", bf16 = "BF16"
        var size: Int {
            switch self {
            case .f32: 4
            case .f64: 8
            case .f16, .bf16: 2
            }
        }
    }

    static func decode(_ raw: UnsafeRawBufferPointer, source: String) throws(SafetensorsError) -> File {
        guard raw.count >= 8 else {
            throw SafetensorsError(.truncated, """
                \(source): the file is \(raw.count) bytes, shorter than the 8-byte header length that \
                starts every safetensors file — it is truncated or not a safetensors file
                """)
        }
        let declared = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard declared <= maximumHeaderLength else {
            throw SafetensorsError(.badHeader, """
                \(source): the header length field says \(declared) bytes (limit \(maximumHeaderLength)) — \
                this is not a safetensors file, or its first 8 bytes are corrupt
                """)
        }
        guard declared <= UInt64(raw.count - 8) else {
            throw SafetensorsError(.truncated, """
                \(source): the header is \(declared) bytes but only \(raw.count - 8) follow the length \
                field — the file is truncated; copy or save it again
                """)
        }
        let dataStart = 8 + Int(declared)
        let headerBytes = UnsafeRawBufferPointer(rebasing: raw[8..<dataStart])
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw SafetensorsError(.badHeader, "\(source): the header is not a JSON object (it must start with '{')")
        }
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(headerBytes))
        } catch let error as DecodingError {
            throw SafetensorsError(.badHeader, "\(source): bad header: \(describe(error))")
        } catch {
            throw SafetensorsError(.badHeader, "\(source): bad header: \(error)")
        }

        let dataLength = raw.count - dataStart
        var layouts: [Layout] = []
        for (name, entry) in header.entries {
            layouts.append(try check(name: name, entry: entry, dataLength: dataLength, source: source))
        }
        // Python's loader demands that the tensors tile the buffer exactly; a gap or an overlap
        // means the header and the data disagree, so we refuse both rather than guess.
        layouts.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var covered = 0
        var previous: String?
        for layout in layouts {
            if layout.begin < covered, let previous {
                throw SafetensorsError(.badOffsets, """
                    \(source): tensor '\(layout.name)' (bytes \(layout.begin)..<\(layout.end)) overlaps \
                    tensor '\(previous)' (ends at \(covered)) — the header is corrupt; save the file again
                    """)
            }
            if layout.begin > covered {
                throw SafetensorsError(.badOffsets, """
                    \(source): bytes \(covered)..<\(layout.begin) of the data buffer belong to no tensor \
                    — the header and the data disagree; save the file again
                    """)
            }
            covered = layout.end
            previous = layout.name
        }
        if covered != dataLength {
            throw SafetensorsError(.badOffsets, """
                \(source): the tensors cover \(covered) bytes but the data buffer has \(dataLength) \
                (\(dataLength - covered) extra byte(s) at the end) — the header and the data disagree
                """)
        }

        var tensors: [String: Tensor] = [:]
        for layout in layouts {
            tensors[layout.name] = Tensor(shape: layout.shape,
                                          values: load(raw, at: dataStart + layout.begin, layout: layout))
        }
        return File(tensors: tensors, metadata: header.metadata)
    }

    private static func check(name: String, entry: Entry, dataLength: Int,
                              source: String) throws(SafetensorsError) -> Layout {
        let prefix = "\(source): tensor '\(name)'"
        guard let dtype = DType(rawValue: entry.dtype) else {
            throw SafetensorsError(.unsupportedDType, """
                \(prefix) has dtype \(entry.dtype), which is not supported (supported: \(supportedList)); \
                convert it to float32 before saving, e.g. t.float() or a.astype(np.float32)
                """)
        }
        guard entry.shape.allSatisfy({ $0 >= 0 }) else {
            throw SafetensorsError(.badHeader, "\(prefix) has shape \(entry.shape) with a negative dimension")
        }
        var count = 1
        var overflow = false
        for d in entry.shape where !overflow { (count, overflow) = count.multipliedReportingOverflow(by: d) }
        let bytes: Int
        (bytes, overflow) = overflow ? (0, true) : count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else {
            throw SafetensorsError(.badHeader, "\(prefix) has an impossibly large shape \(entry.shape)")
        }
        guard entry.data_offsets.count == 2 else {
            throw SafetensorsError(.badOffsets, "\(prefix): data_offsets must be [begin, end], got \(entry.data_offsets)")
        }
        let (begin, end) = (entry.data_offsets[0], entry.data_offsets[1])
        guard begin >= 0, begin <= end else {
            throw SafetensorsError(.badOffsets, "\(prefix) has data_offsets [\(begin), \(end)]; begin must be ≤ end and ≥ 0")
        }
        guard end <= dataLength else {
            throw SafetensorsError(.badOffsets, """
                \(prefix) has data_offsets [\(begin), \(end)] beyond the \(dataLength)-byte data buffer \
                — the file is truncated or its header is corrupt
                """)
        }
        guard end - begin == bytes else {
            throw SafetensorsError(.badOffsets, """
                \(prefix): shape \(entry.shape) of \(dtype.rawValue) needs \(bytes) bytes but data_offsets \
                [\(begin), \(end)] span \(end - begin) — the header is corrupt; save the file again
                """)
        }
        return Layout(name: name, dtype: dtype, shape: entry.shape, count: count, begin: begin, end: end)
    }

    /// Reads one tensor's little-endian elements as Float, whatever the alignment and host order.
    private static func load(_ raw: UnsafeRawBufferPointer, at offset: Int, layout: Layout) -> [Float] {
        [Float](unsafeUninitializedCapacity: layout.count) { buffer, initialized in
            for k in 0..<layout.count {
                let value: Float
                switch layout.dtype {
                case .f32:
                    value = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4 * k, as: UInt32.self)))
                case .f64:
                    value = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 8 * k, as: UInt64.self))))
                case .f16:
                    value = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 2 * k, as: UInt16.self)))
                case .bf16:
                    value = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 2 * k, as: UInt16.self))) << 16)
                }
                buffer.initializeElement(at: k, to: value)
            }
            initialized = layout.count
        }
    }

    /// IEEE binary16 → binary32, exact (including subnormals, infinities and NaN); by hand because
    /// `Float16` is not available on every platform Swift targets.
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign: Float = h & 0x8000 != 0 ? -1 : 1
        let exponent = Int((h >> 10) & 0x1F)
        let fraction = Float(h & 0x3FF)
        switch exponent {
        case 0: return sign * fraction * 0x1p-24
        case 31: return fraction == 0 ? sign * .infinity : .nan
        default: return sign * (1 + fraction * 0x1p-10) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
        }
    }

    /// A one-line account of a JSON decoding failure: where (as a JSON path) and what.
    package static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.isEmpty ? "the top level" : keys.map { key in
                key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)"
            }.joined().trimmingPrefix(".").description
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing key '\(key.stringValue)' in \(path(context.codingPath))"
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)) has the wrong type (expected \(type))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)) is null (expected \(type))"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                let reason = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey]
                return "not valid JSON" + (reason.map { " (\($0))" } ?? "")
            }
            return "\(path(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}
