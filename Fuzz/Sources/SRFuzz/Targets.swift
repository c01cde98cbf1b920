// The fuzz targets: each feeds one decoder or file reader and checks what must hold for every
// input it accepts (a round trip through the library's own encoder; bounds it promises). A
// violated property calls `fail`, which libFuzzer records as a crash like any trap.
import Foundation
import SuccessiveRefinement

struct FuzzTarget: Sendable {
    let name: String
    let run: @Sendable ([UInt8]) -> Void
}

/// Stops the run with `why`; libFuzzer saves the input that got here.
func fail(_ why: String) -> Never {
    fatalError("fuzz property violated: \(why)")
}

enum Targets {
    static let all: [FuzzTarget] = wire + files

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    /// A target for a reader that takes only a path: the input goes through a scratch file.
    /// Empty inputs are skipped: Foundation's Data(contentsOf:) leaks 4 KiB reading an empty
    /// file on Linux (swift-foundation's zero-size read path), which LeakSanitizer would report
    /// on every run — and an empty file is refused by each of these readers before any parsing.
    static func viaFile(_ name: String, suffix: String, _ read: @escaping @Sendable (String) -> Void) -> FuzzTarget {
        FuzzTarget(name: name) { bytes in
            guard !bytes.isEmpty else { return }
            read(Scratch.write(bytes, suffix: suffix))
        }
    }

    // MARK: Wire decoders (input: CompactMessage)

    static let wire: [FuzzTarget] = [
        decoder("task", kind: TaskMessage.kind) { m in
            guard let t = try? TaskMessage(decoding: m) else { return }
            same(t, "task") { try TaskMessage(decoding: t.encode(priority: 0, expiration: nil)) }
            for k in t.pairs.indices { _ = t.vectorChunk(k) }
        },
        decoder("partial", kind: PartialMessage.kind) { m in
            guard let p = try? PartialMessage(decoding: m) else { return }
            same(p, "partial") { try PartialMessage(decoding: p.encode()) }
            for k in p.pairs.indices { _ = p.product(k) }
        },
        decoder("open", kind: OpenRecord.kind) { m in
            guard let o = try? OpenRecord(decoding: m) else { return }
            _ = try? o.job.schedule()
            let again: OpenRecord
            do { again = try OpenRecord(decoding: o.encode()) } catch { fail("open: re-encoded record refused: \(error)") }
            guard again.job == o.job, again.statisticsA.map(values) == o.statisticsA.map(values),
                  values(again.statisticsX) == values(o.statisticsX) else { fail("open: round trip changed the record") }
        },
        decoder("task-failed", kind: TaskFailure.kind) { m in
            guard let f = try? TaskFailure(decoding: m) else { return }
            same(f, "task-failed") { try TaskFailure(decoding: f.encode()) }
        },
        decoder("progress", kind: ProgressMessage.kind) { m in
            guard let p = try? ProgressMessage(decoding: m) else { return }
            guard p.layers.count <= ProgressMessage.maxLayers else { fail("progress: more layers than the bound") }
            same(p, "progress") { try ProgressMessage(decoding: p.encode()) }
        },
        decoder("deadline", kind: DeadlineMessage.kind) { m in
            guard let d = try? DeadlineMessage(decoding: m) else { return }
            same(d, "deadline") { try DeadlineMessage(decoding: d.encode()) }
        },
        decoder("output", kind: OutputMessage.kind) { m in
            guard let o = try? OutputMessage(decoding: m) else { return }
            _ = (o.routingKey, o.maxBound)
            let again: OutputMessage
            do { again = try OutputMessage(decoding: o.encode()) } catch { fail("output: re-encoded output refused: \(error)") }
            // Bit patterns: outputs may carry NaN (nothing requires finite values there).
            func bits(_ o: OutputMessage) -> [UInt64] {
                ([o.elapsedMs, o.lateMs ?? 0] + o.values.elements + o.bound.elements).map(\.bitPattern)
            }
            guard again.job == o.job, again.resolution == o.resolution, again.of == o.of, again.status == o.status,
                  again.reason == o.reason, (again.lateMs == nil) == (o.lateMs == nil),
                  again.values.rows == o.values.rows, again.values.columns == o.values.columns,
                  bits(again) == bits(o) else { fail("output: round trip changed the output") }
        },
        decoder("infer-task", kind: InferenceTask.kind) { m in
            guard let t = try? InferenceTask(decoding: m) else { return }
            same(t, "infer-task") { try InferenceTask(decoding: t.encode(expiration: nil)) }
        },
        decoder("infer-partial", kind: InferencePartial.kind) { m in
            guard let p = try? InferencePartial(decoding: m) else { return }
            same(p, "infer-partial") { try InferencePartial(decoding: p.encode()) }
        },
        decoder("infer-open", kind: InferenceOpen.kind) { m in
            guard let o = try? InferenceOpen(decoding: m) else { return }
            _ = try? o.job.rule()
            same(o, "infer-open") { try InferenceOpen(decoding: o.encode()) }
        },
        decoder("infer-output", kind: InferenceOutput.kind) { m in
            guard let o = try? InferenceOutput(decoding: m) else { return }
            _ = (o.routingKey, o.resolution)
            same(o, "infer-output") { try InferenceOutput(decoding: o.encode()) }
        },
        FuzzTarget(name: "header-bounds") { bytes in
            let headers = CompactMessage.headers(bytes)
            let (deep, entries) = reference(headers)
            switch HeaderBounds.fault(in: headers) {
            case nil:
                guard !deep, entries <= HeaderBounds.maxEntries else {
                    fail("header-bounds: accepted \(entries) entries, too deep: \(deep)")
                }
            case let fault? where fault.contains("deeper"):
                guard deep else { fail("header-bounds: '\(fault)' but nothing nests that deep") }
            case let fault?:
                guard entries > HeaderBounds.maxEntries else { fail("header-bounds: '\(fault)' for \(entries) entries") }
            }
        },
    ]

    /// A wire target: the message as a transport hands it to a role (after HeaderBounds), then
    /// `check`. A message the bounds mark malformed must be refused by every decoder.
    static func decoder(_ name: String, kind: String, _ check: @escaping @Sendable (Message) -> Void) -> FuzzTarget {
        FuzzTarget(name: name) { bytes in
            let message = HeaderBounds.checked(CompactMessage.message(bytes, kind: kind))
            if message.headers[Header.malformed] != nil, decodes(message) {
                fail("\(name): a message with \(Header.malformed) was decoded")
            }
            check(message)
        }
    }

    /// Whether any wire decoder accepts `m`.
    static func decodes(_ m: Message) -> Bool {
        (try? TaskMessage(decoding: m)) != nil || (try? PartialMessage(decoding: m)) != nil
            || (try? OpenRecord(decoding: m)) != nil || (try? DeadlineMessage(decoding: m)) != nil
            || (try? OutputMessage(decoding: m)) != nil || (try? InferenceTask(decoding: m)) != nil
            || (try? InferencePartial(decoding: m)) != nil || (try? InferenceOpen(decoding: m)) != nil
            || (try? InferenceOutput(decoding: m)) != nil || (try? TaskFailure(decoding: m)) != nil
            || (try? ProgressMessage(decoding: m)) != nil
    }

    /// Re-decoding what the library encodes from `value` must succeed and give `value` back.
    static func same<T: Equatable>(_ value: T, _ what: String, _ again: () throws -> T) {
        let decoded: T
        do { decoded = try again() } catch { fail("\(what): the library refuses its own encoding: \(error)") }
        guard decoded == value else { fail("\(what): round trip changed the value:\n  \(value)\n  \(decoded)") }
    }

    static func values(_ s: ChunkedOperand.Statistics) -> [[Double]] {
        s.planeRowL1 + s.planeRowMax + [s.valueRowL1]
    }

    /// What HeaderBounds.fault must find, computed the obvious recursive way (the harness never
    /// nests deeper than CompactMessage.maxNesting): a container at depth ≥ maxDepth, and
    /// the number of entries and elements in all.
    static func reference(_ headers: [String: HeaderValue]) -> (deep: Bool, entries: Int) {
        var deep = false
        var entries = headers.count
        func walk(_ v: HeaderValue, _ depth: Int) {
            let children: [HeaderValue]
            switch v {
            case .array(let items): children = items
            case .table(let t): children = Array(t.values)
            default: return
            }
            if depth >= HeaderBounds.maxDepth { deep = true }
            entries += children.count
            for c in children { walk(c, depth + 1) }
        }
        for v in headers.values { walk(v, 0) }
        return (deep, entries)
    }

    // MARK: File readers (input: the file's bytes)

    static let files: [FuzzTarget] = [
        FuzzTarget(name: "npy") { bytes in
            guard let a = try? Npy.decode(bytes) else { return }
            _ = try? Npy.matrix(from: a, source: "<fuzz>")
            // Byte-compared: the array may hold NaNs, which == would call different.
            let encoded = Npy.encode(a)
            do {
                guard try Npy.encode(Npy.decode(encoded)) == encoded else { fail("npy: round trip changed the array") }
            } catch { fail("npy: the library refuses its own encoding: \(error)") }
        },
        FuzzTarget(name: "safetensors") { bytes in
            guard let f = try? Safetensors.decode(bytes) else { return }
            let again: Safetensors.File
            do { again = try Safetensors.decode(Safetensors.encode(f)) } catch {
                fail("safetensors: the library refuses its own encoding: \(error)")
            }
            func bits(_ f: Safetensors.File) -> [String: [UInt32]] { f.tensors.mapValues { $0.values.map(\.bitPattern) } }
            guard again.metadata == f.metadata, again.tensors.mapValues(\.shape) == f.tensors.mapValues(\.shape),
                  bits(again) == bits(f) else { fail("safetensors: round trip changed the file") }
        },
        FuzzTarget(name: "idx") { bytes in
            _ = bytes.withUnsafeBytes { try? IDX.decodeLabels($0) }
            guard let images = bytes.withUnsafeBytes({ try? IDX.decodeImages($0) }) else { return }
            // What the Fashion-MNIST loader makes of an accepted images file, with a labels file
            // written to match it.
            let labels = (0..<images.count).map { UInt8($0 % 10) }
            let count = withUnsafeBytes(of: UInt32(images.count).bigEndian) { Array($0) }
            Scratch.write(bytes, to: Scratch.fashion + "/t10k-images-idx3-ubyte")
            Scratch.write([0, 0, 8, 1] + count + labels, to: Scratch.fashion + "/t10k-labels-idx1-ubyte")
            guard let set = try? ImageDataset.fashionMNIST(directory: Scratch.fashion, split: .test) else {
                fail("idx: the Fashion-MNIST loader refuses an images file IDX accepts")
            }
            guard set.count == images.count, set.images.count == images.pixels.count else {
                fail("idx: \(set.count) images of \(set.imageSize) values from \(images.count)×\(images.rows)×\(images.columns)")
            }
        },
        // The CIFAR-10 and MNIST CSV readers take only a path.
        viaFile("cifar", suffix: ".bin") { path in
            guard let d = try? ImageDataset.cifar10Binary(path: path) else { return }
            if d.count > 0 { _ = d.image(d.count - 1) }
        },
        viaFile("mnist-csv", suffix: ".csv") { path in
            guard let d = try? ImageDataset.mnist5k(csvPath: path) else { return }
            if d.count > 0 { _ = d.image(d.count - 1) }
        },
        // ImageFile.read picks the reader by suffix and slices samples: byte 0 picks the suffix,
        // bytes 1 and 2 `first` and `count` (0: all), the rest is the file.
        FuzzTarget(name: "image-file") { bytes in
            guard bytes.count >= 4 else { return }  // 3 bytes of options and a non-empty file
            let suffix = [".npy", ".bin", ".csv", "-idx3-ubyte"][Int(bytes[0]) % 4]
            let path = Scratch.write(Array(bytes[3...]), suffix: suffix)
            guard let f = try? ImageFile.read(path, first: Int(bytes[1]), count: bytes[2] == 0 ? nil : Int(bytes[2])) else { return }
            if let labels = f.labels, labels.count != f.samples.rows { fail("image-file: \(labels.count) labels for \(f.samples.rows) samples") }
        },
        FuzzTarget(name: "manifest") { bytes in
            guard let m = try? Model.decodeManifest(Data(bytes)) else { return }
            same(m, "manifest") { try Model.decodeManifest(Data(Model.encodeManifest(m))) }
            // Shapes flow through tensor-free layers (relu, flatten, pooling) without weights.
            _ = try? Model(manifest: m, tensors: [:]).activationShapes()
        },
        // A model as one .safetensors file with the manifest in its metadata: what
        // ModelStore.loadModel reads for a registered model.
        viaFile("model", suffix: ".safetensors") { path in
            guard let model = try? Model.load(from: path) else { return }
            guard let shapes = try? model.activationShapes(), shapes.count == model.manifest.layers.count + 1 else {
                fail("model: a loaded model has no activation shapes")
            }
        },
        // An ONNX file (protobuf) through the importer, which validates what it makes.
        FuzzTarget(name: "onnx") { bytes in
            guard let result = try? ONNXImporter.importModel(Data(bytes), source: "fuzz") else { return }
            guard let shapes = try? result.model.activationShapes(), shapes.count == result.model.manifest.layers.count + 1 else {
                fail("onnx: an imported model has no activation shapes")
            }
        },
    ]
}

/// One file per process for the readers that take a path; in SRFUZZ_TMPDIR (scripts/fuzz.sh
/// points it at a private directory in /dev/shm) or the system's temporary directory.
enum Scratch {
    static let directory: String = ProcessInfo.processInfo.environment["SRFUZZ_TMPDIR"] ?? NSTemporaryDirectory()
    static let stem = "\(directory)/srfuzz-\(getpid())"

    /// A directory of this process, for readers that take a directory.
    static let fashion: String = {
        let path = stem + "-fashion"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    static func write(_ bytes: [UInt8], suffix: String) -> String {
        let path = stem + suffix
        write(bytes, to: path)
        return path
    }

    static func write(_ bytes: [UInt8], to path: String) {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            fatalError("cannot write the scratch file \(path)")
        }
    }
}
