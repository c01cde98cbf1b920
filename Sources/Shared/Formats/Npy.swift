// NumPy .npy files: decode/encode (format versions 1.0–3.0, the dtypes of NpyDType), atomic
// file read/write, and conversion to and from Matrix — how operands and results cross into Python.
import SRCore

import Foundation

/// Reads and writes NumPy `.npy` arrays. Layout: magic `\x93NUMPY`, version, header length,
/// a Python dict literal header, then the raw C-order elements.
/// See https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
public enum Npy {
    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
    /// numpy aligns the data to this many bytes so that files can be memory-mapped.
    static let alignment = 64
    /// numpy leaves room in the header for the first dimension to grow to this many digits.
    static let growthDigits = 21
    static let supportedList = "<f4 (float32), <f8 (float64), |i1 (int8), <i4 (int32)"

    // MARK: Bytes

    /// Parses a complete `.npy` image. `source` (a path, usually) prefixes every error message.
    public static func decode(_ bytes: [UInt8], source: String = "<memory>") throws(NpyError) -> NpyArray {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(NpyError) in try decode(raw, source: source) }
        }.get()
    }

    /// Serializes `array` as numpy's `np.save` does, byte for byte: version 1.0 (2.0 only if
    /// the header outgrows 64 KiB), header padded with spaces and `\n` so data starts at a
    /// multiple of 64 bytes.
    public static func encode(_ array: NpyArray) -> [UInt8] {
        precondition(NpyArray.elementCount(of: array.shape) == array.data.count,
                     "shape \(array.shape) does not match \(array.data.count) elements")
        let header = headerBytes(for: array)
        let total = header.count + array.data.count * array.dtype.itemSize
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.copyBytes(from: header)
            let start = header.count
            switch array.data {
            case .float32(let v): storeLittleEndian(v, into: raw, at: start) { $0.bitPattern }
            case .float64(let v): storeLittleEndian(v, into: raw, at: start) { $0.bitPattern }
            case .int8(let v): storeLittleEndian(v, into: raw, at: start) { UInt8(bitPattern: $0) }
            case .int32(let v): storeLittleEndian(v, into: raw, at: start) { UInt32(bitPattern: $0) }
            }
            initialized = total
        }
    }

    // MARK: Files

    /// Reads and decodes the file at `path`. The file is memory-mapped when possible so a
    /// large operand is not held twice while decoding.
    public static func read(contentsOf path: String) throws(NpyError) -> NpyArray {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            throw NpyError(.io, "\(path): cannot read: \(OSReason.of(error))")
        }
        return try data.withUnsafeBytes { raw in
            Result { () throws(NpyError) in try decode(raw, source: path) }
        }.get()
    }

    /// Writes `array` to `path` atomically: a temporary file in the same directory is renamed
    /// over `path`, so readers (other workers, Python) never see a half-written file.
    public static func write(_ array: NpyArray, to path: String) throws(NpyError) {
        do {
            try AtomicFile.write(encode(array), to: path)
        } catch {
            throw NpyError(.io, "\(path): cannot write: \(error.reason)")
        }
    }

    // MARK: Matrices

    /// Reads a matrix file; see ``matrix(from:source:allowNonFinite:)``.
    public static func readMatrix(contentsOf path: String,
                                  allowNonFinite: Bool = false) throws(NpyError) -> Matrix<Double> {
        try matrix(from: read(contentsOf: path), source: path, allowNonFinite: allowNonFinite)
    }

    /// A 1-D array `(n,)` becomes an n×1 column, a 2-D `(r, c)` an r×c matrix; every dtype is
    /// widened to Double (exact for all four). NaN/Inf are rejected unless `allowNonFinite`,
    /// because they silently poison every product downstream.
    public static func matrix(from array: NpyArray, source: String,
                              allowNonFinite: Bool = false) throws(NpyError) -> Matrix<Double> {
        let rows: Int, columns: Int
        switch array.shape.count {
        case 1: (rows, columns) = (array.shape[0], 1)
        case 2: (rows, columns) = (array.shape[0], array.shape[1])
        default:
            throw NpyError(.wrongShape, """
                \(source): shape \(pythonTuple(array.shape)) is \(array.shape.count)-D, but a matrix \
                must be 1-D (n,) or 2-D (rows, columns); reshape it first, e.g. a.reshape(rows, -1)
                """)
        }
        let elements: [Double]
        switch array.data {
        case .float32(let v): elements = v.map(Double.init)
        case .float64(let v): elements = v
        case .int8(let v): elements = v.map(Double.init)
        case .int32(let v): elements = v.map(Double.init)
        }
        if !allowNonFinite, let bad = elements.firstIndex(where: { !$0.isFinite }) {
            let index = array.shape.count == 1 ? "[\(bad)]" : "[\(bad / columns), \(bad % columns)]"
            let total = elements.lazy.filter { !$0.isFinite }.count
            throw NpyError(.nonFinite, """
                \(source): element \(index) is \(elements[bad]) (\(total) non-finite value(s) in all); \
                inputs must be finite — clean the array first, e.g. np.nan_to_num(a)
                """)
        }
        return Matrix(rows: rows, columns: columns, elements: elements)
    }

    /// `m` as a float64 array of shape (rows, columns), or (rows,) when `asVector` and it is a column.
    public static func array(_ m: Matrix<Double>, asVector: Bool = false) -> NpyArray {
        NpyArray(shape: shape(of: m, asVector: asVector), data: .float64(m.elements))
    }

    /// `m` as a float32 array of shape (rows, columns), or (rows,) when `asVector` and it is a column.
    public static func array(_ m: Matrix<Float>, asVector: Bool = false) -> NpyArray {
        NpyArray(shape: shape(of: m, asVector: asVector), data: .float32(m.elements))
    }

    // MARK: Internals

    private static func shape<T>(of m: Matrix<T>, asVector: Bool) -> [Int] {
        asVector && m.columns == 1 ? [m.rows] : [m.rows, m.columns]
    }

    /// Python's `repr` of a shape tuple: `()`, `(5,)`, `(3, 4)` — used in headers and messages.
    static func pythonTuple(_ shape: [Int]) -> String {
        shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    }

    /// Magic, version, header length and the padded header dict, exactly as numpy writes them.
    static func headerBytes(for array: NpyArray) -> [UInt8] {
        var dict = "{'descr': '\(array.dtype.rawValue)', 'fortran_order': False, "
            + "'shape': \(pythonTuple(array.shape)), }"
        if let first = array.shape.first {
            dict += String(repeating: " ", count: max(0, growthDigits - String(first).count))
        }
        let text = Array(dict.utf8)
        let v1 = wrapHeader(text, major: 1)
        let v1HeaderLength = v1.count - magic.count - 4  // after magic, version and length field
        return v1HeaderLength <= Int(UInt16.max) ? v1 : wrapHeader(text, major: 2)
    }

    private static func wrapHeader(_ text: [UInt8], major: UInt8) -> [UInt8] {
        let lengthSize = major == 1 ? 2 : 4
        // numpy adds a whole block of padding when already aligned; we match it byte for byte.
        let padding = alignment - (magic.count + 2 + lengthSize + text.count + 1) % alignment
        let headerLength = UInt32(text.count + padding + 1)
        var out = magic + [major, 0]
        withUnsafeBytes(of: headerLength.littleEndian) { out += $0.prefix(lengthSize) }
        out += text
        out += repeatElement(UInt8(ascii: " "), count: padding)
        out.append(UInt8(ascii: "\n"))
        return out
    }

    static func decode(_ raw: UnsafeRawBufferPointer, source: String) throws(NpyError) -> NpyArray {
        guard raw.count >= magic.count, raw.prefix(magic.count).elementsEqual(magic) else {
            let zip = raw.starts(with: [0x50, 0x4B, 0x03, 0x04])
            throw NpyError(.notNpy, zip
                ? "\(source): this is a zip archive (.npz?), not a .npy file; save one array with np.save"
                : "\(source): not a .npy file (no \\x93NUMPY magic); save the array with np.save")
        }
        let truncatedHeader = "the header is cut short — the file is truncated; re-save it with np.save"
        guard raw.count >= 8 else { throw NpyError(.truncated, "\(source): \(truncatedHeader)") }
        let lengthSize: Int
        switch (raw[6], raw[7]) {
        case (1, 0): lengthSize = 2
        case (2, 0), (3, 0): lengthSize = 4
        default:
            throw NpyError(.unsupportedVersion, """
                \(source): .npy format version \(raw[6]).\(raw[7]) is not supported (only 1.0, 2.0, \
                3.0); re-save the array with np.save
                """)
        }
        let headerStart = 8 + lengthSize
        guard raw.count >= headerStart else { throw NpyError(.truncated, "\(source): \(truncatedHeader)") }
        let declared = lengthSize == 2
            ? UInt64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
            : UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        guard UInt64(raw.count - headerStart) >= declared else {
            throw NpyError(.truncated, """
                \(source): header length is \(declared) bytes but only \(raw.count - headerStart) follow \
                — the file is truncated; re-save the array with np.save
                """)
        }
        let dataStart = headerStart + Int(declared)
        let text = Array(raw[headerStart..<dataStart])
        if raw[6] == 3, String(validating: text, as: UTF8.self) == nil {
            throw NpyError(.badHeader, "\(source): version 3.0 header is not valid UTF-8; re-save with np.save")
        }
        var parser = NpyHeaderParser(text, source: source)
        let header = try parser.parse()

        guard let dtype = NpyDType(descr: header.descr) else {
            throw NpyError(.unsupportedDType, unsupportedMessage(header.descr, source: source))
        }
        // C and Fortran order coincide when at most one dimension is longer than 1.
        if header.fortranOrder, header.shape.filter({ $0 > 1 }).count > 1 {
            throw NpyError(.fortranOrder, """
                \(source): Fortran-order arrays are not supported; save with np.ascontiguousarray(a)
                """)
        }
        guard let count = NpyArray.elementCount(of: header.shape),
              case (let needed, false) = count.multipliedReportingOverflow(by: dtype.itemSize) else {
            throw NpyError(.badHeader, """
                \(source): shape \(pythonTuple(header.shape)) is impossibly large — the header is \
                corrupt; re-save the array with np.save
                """)
        }
        let available = raw.count - dataStart
        let sizes = "data is \(available) bytes but shape \(pythonTuple(header.shape)) of \(header.descr)"
        if available < needed {
            throw NpyError(.truncated, "\(source): \(sizes) needs \(needed) bytes — the file is truncated")
        }
        if available > needed {
            throw NpyError(.oversized, """
                \(source): \(sizes) needs only \(needed) bytes — \(available - needed) extra byte(s) follow \
                the array (several arrays in one file?); save exactly one array with np.save
                """)
        }
        let data: NpyData
        switch dtype {
        case .float32:
            data = .float32(loadLittleEndian(raw, at: dataStart, count: count) { Float(bitPattern: $0 as UInt32) })
        case .float64:
            data = .float64(loadLittleEndian(raw, at: dataStart, count: count) { Double(bitPattern: $0 as UInt64) })
        case .int8:
            data = .int8(loadLittleEndian(raw, at: dataStart, count: count) { Int8(bitPattern: $0 as UInt8) })
        case .int32:
            data = .int32(loadLittleEndian(raw, at: dataStart, count: count) { Int32(bitPattern: $0 as UInt32) })
        }
        return NpyArray(shape: header.shape, data: data)
    }

    private static func unsupportedMessage(_ descr: String, source: String) -> String {
        if descr.hasPrefix(">"), let native = NpyDType(descr: "<" + descr.dropFirst()) {
            return """
                \(source): big-endian dtype '\(descr)' is not supported (supported: \(supportedList)); \
                convert with a.astype('\(native.rawValue)')
                """
        }
        return """
            \(source): dtype '\(descr)' is not supported (supported: \(supportedList)); \
            convert with e.g. a.astype('<f8')
            """
    }

    /// Reads `count` little-endian elements starting at byte `offset`, whatever the alignment
    /// and host byte order.
    private static func loadLittleEndian<Bits: FixedWidthInteger, T>(
        _ raw: UnsafeRawBufferPointer, at offset: Int, count: Int, _ make: (Bits) -> T
    ) -> [T] {
        let size = MemoryLayout<Bits>.size
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            for k in 0..<count {
                let bits = raw.loadUnaligned(fromByteOffset: offset + k * size, as: Bits.self)
                buffer.initializeElement(at: k, to: make(Bits(littleEndian: bits)))
            }
            initialized = count
        }
    }

    private static func storeLittleEndian<T, Bits: FixedWidthInteger>(
        _ values: [T], into raw: UnsafeMutableRawBufferPointer, at offset: Int, _ bits: (T) -> Bits
    ) {
        let size = MemoryLayout<Bits>.size
        for (k, value) in values.enumerated() {
            raw.storeBytes(of: bits(value).littleEndian, toByteOffset: offset + k * size, as: Bits.self)
        }
    }
}

/// The three entries of a `.npy` header dict.
struct NpyHeader: Equatable {
    var descr: String
    var fortranOrder: Bool
    var shape: [Int]
}

/// Parses the one Python literal numpy writes as a header: a dict from str keys to a str, a
/// bool or a tuple of ints. Hand-written because the header is untrusted input; tolerant of
/// whitespace, either quote style, trailing commas and Python 2's `L` suffix on integers.
struct NpyHeaderParser {
    private enum Value { case string(String), bool(Bool), tuple([Int]), list }

    private let text: [UInt8]
    private let source: String
    private var position = 0

    init(_ text: [UInt8], source: String) {
        self.text = text
        self.source = source
    }

    mutating func parse() throws(NpyError) -> NpyHeader {
        skipSpace()
        try expect("{")
        var entries: [String: Value] = [:]
        while true {
            skipSpace()
            if peek == UInt8(ascii: "}") { position += 1; break }
            let key = try string()
            guard entries[key] == nil else { throw failure("duplicate key '\(key)'") }
            skipSpace()
            try expect(":")
            skipSpace()
            entries[key] = try value()
            skipSpace()
            if peek == UInt8(ascii: ",") { position += 1 } else if peek != UInt8(ascii: "}") {
                throw failure("expected ',' or '}'")
            }
        }
        skipSpace()
        guard position == text.count else { throw failure("unexpected text after '}'") }

        let keys = ["descr", "fortran_order", "shape"]
        if let extra = entries.keys.filter({ !keys.contains($0) }).min() {
            throw failure("unknown key '\(extra)'", positioned: false)
        }
        if let missing = keys.first(where: { entries[$0] == nil }) {
            throw failure("missing key '\(missing)'", positioned: false)
        }
        let descr: String
        switch entries["descr"] {
        case .string(let s)?: descr = s
        case .list?:
            throw NpyError(.unsupportedDType, """
                \(source): structured (record) dtypes are not supported (supported: \(Npy.supportedList)); \
                save a plain numeric array
                """)
        default: throw failure("'descr' must be a dtype string", positioned: false)
        }
        guard case .bool(let fortran)? = entries["fortran_order"] else {
            throw failure("'fortran_order' must be True or False", positioned: false)
        }
        guard case .tuple(let shape)? = entries["shape"] else {
            throw failure("'shape' must be a tuple of integers", positioned: false)
        }
        return NpyHeader(descr: descr, fortranOrder: fortran, shape: shape)
    }

    private var peek: UInt8? { position < text.count ? text[position] : nil }

    private mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { position += 1 }
    }

    private mutating func expect(_ c: Unicode.Scalar) throws(NpyError) {
        guard peek == UInt8(ascii: c) else { throw failure("expected '\(c)'") }
        position += 1
    }

    private mutating func value() throws(NpyError) -> Value {
        switch peek {
        case UInt8(ascii: "'"), UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "("): return .tuple(try tuple())
        case UInt8(ascii: "["): try skipBrackets(); return .list
        default:
            if consume("True") { return .bool(true) }
            if consume("False") { return .bool(false) }
            throw failure("unexpected value")
        }
    }

    private mutating func consume(_ word: String) -> Bool {
        let bytes = Array(word.utf8)
        guard text[position...].starts(with: bytes) else { return false }
        position += bytes.count
        return true
    }

    private mutating func string() throws(NpyError) -> String {
        guard let quote = peek, quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else {
            throw failure("expected a quoted string")
        }
        position += 1
        var bytes: [UInt8] = []
        while let c = peek, c != quote {
            if c == UInt8(ascii: "\\") { position += 1 }
            if let next = peek { bytes.append(next); position += 1 }
        }
        guard peek == quote else { throw failure("unterminated string") }
        position += 1
        return String(decoding: bytes, as: UTF8.self)
    }

    private mutating func tuple() throws(NpyError) -> [Int] {
        position += 1
        var dims: [Int] = []
        while true {
            skipSpace()
            if peek == UInt8(ascii: ")") { position += 1; return dims }
            dims.append(try dimension())
            skipSpace()
            if peek == UInt8(ascii: ",") { position += 1 } else if peek != UInt8(ascii: ")") {
                throw failure("expected ',' or ')' in shape")
            }
        }
    }

    private mutating func dimension() throws(NpyError) -> Int {
        if peek == UInt8(ascii: "-") { throw failure("negative dimension in shape") }
        var value = 0
        var digits = 0
        while let c = peek, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(c - UInt8(ascii: "0")))
            guard !o1, !o2 else { throw failure("dimension too large") }
            value = sum
            digits += 1
            position += 1
        }
        guard digits > 0 else { throw failure("expected an integer dimension") }
        if peek == UInt8(ascii: "L") || peek == UInt8(ascii: "l") { position += 1 }
        return value
    }

    /// Skips a bracketed list (a structured dtype's field list), honouring nesting and strings.
    private mutating func skipBrackets() throws(NpyError) {
        var depth = 0
        repeat {
            guard let c = peek else { throw failure("unterminated list") }
            switch c {
            case UInt8(ascii: "["), UInt8(ascii: "("): depth += 1; position += 1
            case UInt8(ascii: "]"), UInt8(ascii: ")"): depth -= 1; position += 1
            case UInt8(ascii: "'"), UInt8(ascii: "\""): _ = try string()
            default: position += 1
            }
        } while depth > 0
    }

    /// A `.badHeader` error quoting the header; syntax errors also give the byte offset.
    private func failure(_ what: String, positioned: Bool = true) -> NpyError {
        let place = positioned ? " at byte \(position)" : ""
        var shown = String(decoding: text, as: UTF8.self)
        while shown.last?.isWhitespace == true { shown.removeLast() }
        if shown.count > 200 { shown = String(shown.prefix(200)) + "…" }
        return NpyError(.badHeader, """
            \(source): malformed .npy header (\(what)\(place) in \(shown)); \
            re-save the array with np.save
            """)
    }
}
