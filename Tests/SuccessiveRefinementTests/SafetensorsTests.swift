// Safetensors files: round trips, malformed files refused with a message naming the problem,
// and interoperability with Python (the same bytes written and checked by numpy).
import Foundation
import Testing
@testable import SRCore
@testable import SRFormats
@testable import SRNeural
@testable import SRTraining

// MARK: - Safetensors

@Suite struct ModelSafetensorsTests {
    @Test func roundTrip() throws {
        var g = SplitMix64(seed: 1)
        let file = Safetensors.File(
            tensors: ["b": ModelFixtures.randomTensor([3, 4], using: &g), "a.weight": ModelFixtures.randomTensor([2, 1, 3, 3], using: &g),
                      "scalar": Tensor(shape: [], values: [-0.0]), "empty": Tensor(shape: [0, 5]),
                      "q\"uote\\d": Tensor(shape: [1], values: [.infinity])],
            metadata: ["note": "line\nbreak \"quoted\" ünïcode", "sr-model": "{}"])
        let bytes = Safetensors.encode(file)
        let headerLength = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        #expect(headerLength % 8 == 0, "data must start 8-byte aligned")
        let decoded = try Safetensors.decode(bytes)
        #expect(decoded == file)
        #expect(decoded.tensors["scalar"]!.values[0].sign == .minus)

        let dir = try ModelFixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.safetensors").path
        try Safetensors.write(file, to: path)
        #expect(try Safetensors.read(contentsOf: path) == file)
    }

    @Test func halfPrecisionConversion() {
        #expect(Safetensors.halfToFloat(0x3C00) == 1)
        #expect(Safetensors.halfToFloat(0xC000) == -2)
        #expect(Safetensors.halfToFloat(0x0001) == 0x1p-24)
        #expect(Safetensors.halfToFloat(0x7BFF) == 65504)
        #expect(Safetensors.halfToFloat(0x7C00) == .infinity)
        #expect(Safetensors.halfToFloat(0x7E00).isNaN)
    }

    @Test func readsF64F16AndBF16() throws {
        var data: [UInt8] = []
        withUnsafeBytes(of: (2.5 as Double).bitPattern.littleEndian) { data += $0 }
        withUnsafeBytes(of: UInt16(0x3E00).littleEndian) { data += $0 }  // 1.5 as F16
        withUnsafeBytes(of: UInt16(0xC040).littleEndian) { data += $0 }  // −3 as BF16
        let header = """
            {"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"h":{"dtype":"F16","shape":[],"data_offsets":[8,10]},\
            "b":{"dtype":"BF16","shape":[1,1],"data_offsets":[10,12]}}
            """
        let file = try Safetensors.decode(ModelFixtures.safetensorsBytes(header: header, data: data))
        #expect(file.tensors["d"] == Tensor(shape: [1], values: [2.5]))
        #expect(file.tensors["h"] == Tensor(shape: [], values: [1.5]))
        #expect(file.tensors["b"] == Tensor(shape: [1, 1], values: [-3]))
    }

    static let f32Entry = #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    @Test(arguments: [
        (ModelFixtures.safetensorsBytes(header: "").prefix(5).map { $0 }, ModelError.Code.truncated, "shorter than the 8-byte"),
        (ModelFixtures.safetensorsBytes(header: "{}", declaredLength: 1 << 40), .badHeader, "not a safetensors file"),
        (ModelFixtures.safetensorsBytes(header: f32Entry, declaredLength: 500), .truncated, "truncated"),
        (ModelFixtures.safetensorsBytes(header: "[1, 2]"), .badHeader, "must start with '{'"),
        (ModelFixtures.safetensorsBytes(header: "{\"x\": "), .badHeader, "not valid JSON"),
        (ModelFixtures.safetensorsBytes(header: #"{"x":{"dtype":"F32","shape":[2]}}"#), .badHeader, "missing key 'data_offsets' in x"),
        (ModelFixtures.safetensorsBytes(header: #"{"x":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}"#), .badHeader, "x.shape has the wrong type"),
        (ModelFixtures.safetensorsBytes(header: #"{"x":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)),
         .unsupportedDType, "dtype I32"),
        (ModelFixtures.safetensorsBytes(header: f32Entry, data: Array(repeating: 0, count: 4)), .badOffsets, "beyond the 4-byte data buffer"),
        (ModelFixtures.safetensorsBytes(header: #"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8)),
         .badOffsets, "needs 12 bytes"),
        (ModelFixtures.safetensorsBytes(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: Array(repeating: 0, count: 8)),
         .badOffsets, "begin must be ≤ end"),
        (ModelFixtures.safetensorsBytes(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                          data: Array(repeating: 0, count: 12)), .badOffsets, "overlaps tensor 'x'"),
        (ModelFixtures.safetensorsBytes(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: Array(repeating: 0, count: 12)),
         .badOffsets, "bytes 0..<4 of the data buffer belong to no tensor"),
        (ModelFixtures.safetensorsBytes(header: f32Entry, data: Array(repeating: 0, count: 10)), .badOffsets, "2 extra byte(s)"),
        (ModelFixtures.safetensorsBytes(header: #"{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#), .badHeader, "negative"),
        (ModelFixtures.safetensorsBytes(header: #"{"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}"#),
         .badHeader, "impossibly large"),
    ] as [([UInt8], ModelError.Code, String)])
    func malformed(bytes: [UInt8], code: ModelError.Code, fragment: String) {
        ModelFixtures.expectModelError(code, containing: ["bad.safetensors", fragment]) { () throws(ModelError) in
            _ = try ModelError.wrapping { () throws(SafetensorsError) in try Safetensors.decode(bytes, source: "bad.safetensors") }
        }
    }

    @Test func missingFileIsAnIOError() {
        ModelFixtures.expectModelError(.io, containing: ["/nonexistent/x.safetensors", "No such file"]) { () throws(ModelError) in
            _ = try ModelError.wrapping { () throws(SafetensorsError) in try Safetensors.read(contentsOf: "/nonexistent/x.safetensors") }
        }
    }
}

/// The same bytes, written and checked by Python with only json, struct and numpy (the
/// `safetensors` package is usually not installed); the checker applies that package's rules.
@Suite(.enabled(if: ModelTestPython.isAvailable, "python3 with numpy is not installed; the Python interoperability check is skipped"))
struct ModelSafetensorsPythonTests {
    static let writer = """
        import json, struct, sys, numpy as np
        a = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) / 4
        b = np.linspace(-1, 1, 5).astype(np.float64)
        c = np.array([[0.5, -2.0], [65504, 1e-3]], dtype=np.float16)
        tensors = {"layer.a": a, "layer.b": b, "layer.c": c}
        names = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.float16): "F16"}
        header, data = {"__metadata__": {"format": "pt"}}, b""
        for name, t in tensors.items():
            header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [len(data), len(data) + t.nbytes]}
            data += t.astype(t.dtype.newbyteorder("<")).tobytes()
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
        """

    /// Reads a file as Python's safetensors does: contiguous offsets from 0 covering the buffer.
    static let checker = """
        import json, struct, sys, numpy as np
        raw = open(sys.argv[1], "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        assert n % 8 == 0 and n <= 100_000_000
        header = json.loads(raw[8:8 + n])
        meta = header.pop("__metadata__", {})
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
        buf = raw[8 + n:]
        end, out = 0, {}
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
            s, e = info["data_offsets"]
            assert info["dtype"] == "F32" and s == end and e - s == 4 * int(np.prod(info["shape"]))
            t = np.frombuffer(buf[s:e], dtype="<f4").reshape(info["shape"])
            out[name] = {"shape": list(t.shape), "sum": float(t.astype(np.float64).sum()), "first": float(t.flat[0])}
            end = e
        assert end == len(buf)
        print(json.dumps({"meta": meta, "tensors": out}))
        """

    @Test func readsAFileWrittenByPython() throws {
        let dir = try ModelFixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("py.safetensors").path
        try ModelTestPython.run(Self.writer, arguments: [path])
        let file = try Safetensors.read(contentsOf: path)
        #expect(file.metadata == ["format": "pt"])
        #expect(file.tensors["layer.a"] == Tensor(shape: [3, 4], values: (0..<12).map { (Float($0) - 5.5) / 4 }))
        let b = try #require(file.tensors["layer.b"])
        #expect(b.shape == [5])
        #expect(b.values == (0..<5).map { Float(-1 + Double($0) * 0.5) })
        #expect(file.tensors["layer.c"]!.shape == [2, 2])
        #expect(file.tensors["layer.c"]!.values[0...2] == [0.5, -2, 65504])
        #expect(abs(file.tensors["layer.c"]!.values[3] - 1e-3) < 1e-6)
    }

    struct Checked: Decodable {
        struct Entry: Decodable { let shape: [Int]; let sum: Double; let first: Double }
        let meta: [String: String]
        let tensors: [String: Entry]
    }

    @Test func pythonAcceptsWhatWeWrite() throws {
        let dir = try ModelFixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = ModelFixtures.tinyConvNet()
        let path = dir.appendingPathComponent("m.safetensors").path
        try model.save(toFile: path)
        let output = try ModelTestPython.run(Self.checker, arguments: [path])
        let checked = try JSONDecoder().decode(Checked.self, from: Data(output.utf8))
        #expect(Set(checked.tensors.keys) == Set(model.tensors.keys))
        for (name, t) in model.tensors {
            let entry = try #require(checked.tensors[name])
            #expect(entry.shape == t.shape)
            #expect(entry.first == Double(t.values[0]))
            #expect(abs(entry.sum - t.values.reduce(0) { $0 + Double($1) }) < 1e-9)
        }
        let manifest = try Model.decodeManifest(Data(checked.meta["sr-model"]!.utf8))
        #expect(manifest == model.manifest)
    }
}
