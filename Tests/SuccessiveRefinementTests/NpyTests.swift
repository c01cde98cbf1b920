// Tests of the .npy reader/writer: round trips, numpy's exact bytes, every malformed-input
// error, matrix conversion, and (when python3 with numpy is present) real interoperability.

import Foundation
import Testing
@testable import SRCore
@testable import SRFormats

/// A named array for parameterized tests, so failures say which case broke.
struct NpySample: Sendable, CustomTestStringConvertible {
    let name: String
    let array: NpyArray
    var testDescription: String { name }
}

/// A named malformed image and the error code it must produce.
struct MalformedNpy: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let code: NpyError.Code
    var testDescription: String { name }
}

/// Builds a .npy image from raw header text, padded as numpy pads, so tests can vary one field.
func npyImage(_ header: String, data: [UInt8], major: UInt8 = 1) -> [UInt8] {
    let lengthSize = major == 1 ? 2 : 4
    var text = Array(header.utf8)
    let unpadded = 8 + lengthSize + text.count + 1
    text += Array(repeating: 0x20, count: (64 - unpadded % 64) % 64) + [0x0A]
    var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
    withUnsafeBytes(of: UInt32(text.count).littleEndian) { out += $0.prefix(lengthSize) }
    return out + text
}

/// Little-endian bytes of doubles, the payload numpy writes for '<f8'.
func f8Bytes(_ values: [Double]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
}

/// Runs `body` with a fresh directory under the system temp dir, removed afterwards.
func withTemporaryDirectory<R>(_ body: (URL) throws -> R) throws -> R {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("npy-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    return try body(dir)
}

/// Whether `python3 -c "import numpy"` succeeds; computed once, lazily.
let numpyAvailable: Bool = {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import numpy"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}()

@Suite("Npy")
struct NpyTests {
    static let samples: [NpySample] = [
        NpySample(name: "float32 2-D", array: NpyArray(shape: [2, 3], data: .float32(
            [1.5, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -3.25, 1e-3]))),
        NpySample(name: "float64 1-D", array: NpyArray(shape: [4], data: .float64(
            [.pi, -1e300, .leastNonzeroMagnitude, 0.1]))),
        NpySample(name: "int8 2-D", array: NpyArray(shape: [3, 2], data: .int8([-128, 127, 0, -1, 1, 42]))),
        NpySample(name: "int32 1-D", array: NpyArray(shape: [3], data: .int32([.min, .max, -7]))),
        NpySample(name: "float64 empty 1-D", array: NpyArray(shape: [0], data: .float64([]))),
        NpySample(name: "int8 empty 2-D", array: NpyArray(shape: [0, 3], data: .int8([]))),
        NpySample(name: "float32 empty 2-D", array: NpyArray(shape: [2, 0], data: .float32([]))),
        NpySample(name: "int32 scalar", array: NpyArray(shape: [], data: .int32([-5]))),
        // Long enough that numpy's growth padding pushes the data from byte 128 to byte 192.
        NpySample(name: "float64 rank 20", array: NpyArray(shape: Array(repeating: 1, count: 20),
                                                           data: .float64([7]))),
    ]

    @Test("encode/decode round trip", arguments: samples)
    func roundTrip(sample: NpySample) throws {
        let bytes = Npy.encode(sample.array)
        let decoded = try Npy.decode(bytes)
        #expect(decoded == sample.array)
        #expect(decoded.dtype == sample.array.dtype)
        // Byte equality also catches lost bits that == forgives, e.g. -0.0 vs 0.0.
        #expect(Npy.encode(decoded) == bytes)
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        let dataStart = 10 + headerLength
        #expect(dataStart % 64 == 0)
        #expect(bytes[dataStart - 1] == UInt8(ascii: "\n"))
        #expect(bytes.count == dataStart + sample.array.data.count * sample.array.dtype.itemSize)
    }

    @Test("file round trip, atomic write leaves no temporary files", arguments: samples)
    func fileRoundTrip(sample: NpySample) throws {
        try withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("a.npy").path
            try Npy.write(NpyArray(shape: [1], data: .int8([9])), to: path)
            try Npy.write(sample.array, to: path)  // replaces the existing file
            #expect(try Npy.read(contentsOf: path) == sample.array)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["a.npy"])
        }
    }

    /// Exactly what numpy (1.x and 2.x) writes for np.save(f, np.array([[1.5, -2.0]], dtype='<f8')).
    static let numpyBytes: [UInt8] =
        [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00]
        + Array("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }".utf8)
        + Array(repeating: 0x20, count: 58) + [0x0A]
        + [0, 0, 0, 0, 0, 0, 0xF8, 0x3F, 0, 0, 0, 0, 0, 0, 0, 0xC0]

    @Test func decodesNumpyBytes() throws {
        let array = try Npy.decode(Self.numpyBytes)
        #expect(array == NpyArray(shape: [1, 2], data: .float64([1.5, -2.0])))
    }

    @Test func encodesExactlyAsNumpy() {
        #expect(Npy.encode(NpyArray(shape: [1, 2], data: .float64([1.5, -2.0]))) == Self.numpyBytes)
        // numpy reserves 21 digits for the first dimension to grow; for this long header that
        // moves the data from byte 128 to 192 (np.save(f, np.ones((1,) * 20)) is 200 bytes).
        let rank20 = NpyArray(shape: Array(repeating: 1, count: 20), data: .float64([1]))
        #expect(Npy.encode(rank20).count == 200)
    }

    @Test func version2And3HeadersParse() throws {
        // numpy: np.lib.format.write_array(f, np.array([1, 2], dtype='<i4'), version=(2, 0))
        let header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }"
        let payload: [UInt8] = [1, 0, 0, 0, 2, 0, 0, 0]
        let v2 = npyImage(header, data: payload, major: 2) + payload
        #expect(Array(v2[6..<12]) == [2, 0, 0x74, 0, 0, 0])
        #expect(try Npy.decode(v2) == NpyArray(shape: [2], data: .int32([1, 2])))
        let v3 = npyImage(header, data: payload, major: 3) + payload
        #expect(try Npy.decode(v3) == NpyArray(shape: [2], data: .int32([1, 2])))
    }

    @Test func tolerantHeaderSyntax() throws {
        let cases: [(String, [Int])] = [
            ("  {\"descr\":'<i1','shape':(3L,),\"fortran_order\":False}", [3]),
            ("{'descr': '|i1', 'fortran_order': False, 'shape': ( 1 , 3 ) , }", [1, 3]),
            ("{'descr': '<i1', 'fortran_order': False, 'shape': (3,),}\t", [3]),
        ]
        for (header, shape) in cases {
            let array = try Npy.decode(npyImage(header, data: []) + [1, 0xFF, 3])
            #expect(array == NpyArray(shape: shape, data: .int8([1, -1, 3])), "\(header)")
        }
        let scalar = npyImage("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", data: [])
        #expect(try Npy.decode(scalar + f8Bytes([2.5])) == NpyArray(shape: [], data: .float64([2.5])))
        // Fortran and C order are the same layout when only one dimension exceeds 1.
        let column = npyImage("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 1), }", data: [])
        #expect(try Npy.decode(column + f8Bytes([1, 2])).shape == [2, 1])
    }

    static let malformed: [MalformedNpy] = {
        func header(_ descr: String = "<f8", fortran: String = "False", shape: String = "(3, 4)") -> [UInt8] {
            npyImage("{'descr': '\(descr)', 'fortran_order': \(fortran), 'shape': \(shape), }", data: [])
        }
        let twelve = f8Bytes(Array(repeating: 1, count: 12))
        let valid = header() + twelve
        var v4 = valid
        v4[6] = 4
        return [
            MalformedNpy(name: "bad magic", bytes: Array("PK\u{3}\u{4}not numpy at all".utf8), code: .notNpy),
            MalformedNpy(name: "empty", bytes: [], code: .notNpy),
            MalformedNpy(name: "version 4.0", bytes: v4, code: .unsupportedVersion),
            MalformedNpy(name: "Fortran order", bytes: header(fortran: "True") + twelve, code: .fortranOrder),
            MalformedNpy(name: "complex <c16", bytes: header("<c16") + twelve + twelve, code: .unsupportedDType),
            MalformedNpy(name: "big-endian >f8", bytes: header(">f8") + twelve, code: .unsupportedDType),
            MalformedNpy(name: "int16 <i2", bytes: header("<i2") + Array(twelve[..<24]), code: .unsupportedDType),
            MalformedNpy(name: "structured", bytes: npyImage(
                "{'descr': [('a', '<f8'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }",
                data: []) + Array(repeating: 0, count: 12), code: .unsupportedDType),
            MalformedNpy(name: "truncated data", bytes: Array(valid.dropLast()), code: .truncated),
            MalformedNpy(name: "oversized data", bytes: valid + [0], code: .oversized),
            MalformedNpy(name: "truncated header", bytes: Array(valid[..<40]), code: .truncated),
            MalformedNpy(name: "truncated length field", bytes: Array(valid[..<9]), code: .truncated),
            MalformedNpy(name: "negative dimension", bytes: header(shape: "(-1, 4)"), code: .badHeader),
            MalformedNpy(name: "dimension overflow", bytes: header(shape: "(99999999999999999999,)"),
                         code: .badHeader),
            MalformedNpy(name: "element count overflow", bytes: header(shape: "(4294967296, 4294967296)"),
                         code: .badHeader),
            MalformedNpy(name: "byte count overflow", bytes: header(shape: "(4611686018427387904,)"),
                         code: .badHeader),
            MalformedNpy(name: "missing shape", bytes: npyImage(
                "{'descr': '<f8', 'fortran_order': False}", data: []), code: .badHeader),
            MalformedNpy(name: "not a dict", bytes: npyImage("[1, 2, 3]", data: []), code: .badHeader),
            MalformedNpy(name: "unknown key", bytes: npyImage(
                "{'descr': '<f8', 'fortran_order': False, 'shape': (), 'x': 'y'}", data: []), code: .badHeader),
        ]
    }()

    @Test("malformed input gives its error code", arguments: malformed)
    func malformedInput(sample: MalformedNpy) {
        let error = #expect(throws: NpyError.self) { try Npy.decode(sample.bytes, source: "x.npy") }
        #expect(error?.code == sample.code)
        #expect(error?.message.hasPrefix("x.npy: ") == true, "\(error?.message ?? "")")
    }

    @Test func errorMessagesSayWhatToDo() throws {
        func message(_ bytes: [UInt8]) -> String {
            (#expect(throws: NpyError.self) { try Npy.decode(bytes, source: "x.npy") })?.message ?? ""
        }
        let header = npyImage("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", data: [])
        #expect(message(header + f8Bytes(Array(repeating: 0, count: 11))) ==
            "x.npy: data is 88 bytes but shape (3, 4) of <f8 needs 96 bytes — the file is truncated")
        let fortran = npyImage("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }", data: [])
        #expect(message(fortran + f8Bytes([1, 2, 3, 4])) ==
            "x.npy: Fortran-order arrays are not supported; save with np.ascontiguousarray(a)")
        let big = npyImage("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", data: [])
        #expect(message(big + f8Bytes([1])).contains("a.astype('<f8')"))
        let c16 = message(npyImage("{'descr': '<c16', 'fortran_order': False, 'shape': (0,), }", data: []))
        #expect(c16.contains("'<c16'") && c16.contains("<f4") && c16.contains("|i1") && c16.contains("<i4"))
    }

    @Test func matrixFromOneAndTwoDimensions() throws {
        let column = try Npy.matrix(from: NpyArray(shape: [3], data: .int8([1, -2, 3])), source: "v")
        #expect(column == Matrix(column: [1, -2, 3]))
        let grid = try Npy.matrix(from: NpyArray(shape: [2, 3], data: .int32([1, 2, 3, 4, 5, 6])), source: "m")
        #expect(grid == Matrix(rows: 2, columns: 3, elements: [1, 2, 3, 4, 5, 6]))
        let single = try Npy.matrix(from: NpyArray(shape: [1, 2], data: .float32([0.5, -1])), source: "s")
        #expect(single == Matrix(rows: 1, columns: 2, elements: [0.5, -1]))
    }

    @Test func nonFiniteValuesAreRejectedUnlessAllowed() throws {
        try withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("nan.npy").path
            try Npy.write(NpyArray(shape: [2, 2], data: .float64([1, 2, .nan, 4])), to: path)
            let error = #expect(throws: NpyError.self) { try Npy.readMatrix(contentsOf: path) }
            #expect(error?.code == .nonFinite)
            #expect(error?.message.hasPrefix(path) == true)
            #expect(error?.message.contains("[1, 0]") == true, "\(error?.message ?? "")")
            let allowed = try Npy.readMatrix(contentsOf: path, allowNonFinite: true)
            #expect(allowed.rows == 2 && allowed[1, 0].isNaN && allowed[1, 1] == 4)
        }
        let inf = NpyArray(shape: [3], data: .float32([1, 2, -.infinity]))
        let error = #expect(throws: NpyError.self) { try Npy.matrix(from: inf, source: "inf.npy") }
        #expect(error?.code == .nonFinite)
        #expect(error?.message.contains("[2]") == true, "\(error?.message ?? "")")
        #expect(try Npy.matrix(from: inf, source: "inf.npy", allowNonFinite: true)[2, 0] == -.infinity)
    }

    @Test func otherRanksAreWrongShape() {
        for array in [NpyArray(shape: [2, 1, 2], data: .float64([1, 2, 3, 4])),
                      NpyArray(shape: [], data: .float64([1]))] {
            let error = #expect(throws: NpyError.self) { try Npy.matrix(from: array, source: "t.npy") }
            #expect(error?.code == .wrongShape)
        }
    }

    @Test func ioErrorsNameThePathAndReason() throws {
        try withTemporaryDirectory { dir in
            let missing = dir.appendingPathComponent("missing.npy").path
            let read = #expect(throws: NpyError.self) { try Npy.readMatrix(contentsOf: missing) }
            #expect(read?.code == .io)
            #expect(read?.message.contains(missing) == true)
            #expect(read?.message.contains("No such file") == true, "\(read?.message ?? "")")
            let nowhere = dir.appendingPathComponent("no/such/dir/out.npy").path
            let write = #expect(throws: NpyError.self) {
                try Npy.write(NpyArray(shape: [0], data: .int8([])), to: nowhere)
            }
            #expect(write?.code == .io)
            #expect(write?.message.contains(nowhere) == true)
        }
    }

    @Test func arraysFromMatrices() {
        let column = Matrix<Double>(column: [1, 2, 3])
        #expect(Npy.array(column).shape == [3, 1])
        #expect(Npy.array(column, asVector: true) == NpyArray(shape: [3], data: .float64([1, 2, 3])))
        let wide = Matrix<Float>(rows: 2, columns: 2, elements: [1, 2, 3, 4])
        #expect(Npy.array(wide, asVector: true) == NpyArray(shape: [2, 2], data: .float32([1, 2, 3, 4])))
    }

    /// numpy loads what we write, and we load what numpy writes; numpy re-saving our array
    /// must reproduce our bytes exactly. One python process for all samples keeps it fast.
    @Test(.enabled(if: numpyAvailable, "needs python3 with numpy"))  // skipped on machines without numpy
    func interoperatesWithNumpy() throws {
        let cases = Array(Self.samples.enumerated())
        try withTemporaryDirectory { dir in
            for (k, sample) in cases {
                try Npy.write(sample.array, to: dir.appendingPathComponent("in\(k).npy").path)
            }
            let script = """
                import sys, numpy as np
                d = sys.argv[1]
                for k in sys.argv[2:]:
                    a = np.load(f"{d}/in{k}.npy")
                    np.save(f"{d}/ref{k}.npy", a)
                    np.save(f"{d}/x2_{k}.npy", a * 2)
                """
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", script, dir.path] + cases.map { String($0.offset) }
            let stderr = Pipe()
            process.standardError = stderr
            try process.run()
            let diagnostics = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            try #require(process.terminationStatus == 0, "python failed: \(diagnostics)")

            for (k, sample) in cases {
                let reference = try Data(contentsOf: dir.appendingPathComponent("ref\(k).npy"))
                #expect([UInt8](reference) == Npy.encode(sample.array), "numpy bytes differ for \(sample.name)")
                let doubled = try Npy.read(contentsOf: dir.appendingPathComponent("x2_\(k).npy").path)
                #expect(doubled == Self.doubled(sample.array), "\(sample.name)")
            }
        }
    }

    /// The array numpy's `a * 2` gives (same dtype; int8 wraps like numpy's).
    static func doubled(_ a: NpyArray) -> NpyArray {
        switch a.data {
        case .float32(let v): NpyArray(shape: a.shape, data: .float32(v.map { $0 * 2 }))
        case .float64(let v): NpyArray(shape: a.shape, data: .float64(v.map { $0 * 2 }))
        case .int8(let v): NpyArray(shape: a.shape, data: .int8(v.map { $0 &* 2 }))
        case .int32(let v): NpyArray(shape: a.shape, data: .int32(v.map { $0 &* 2 }))
        }
    }
}
