// The seed corpus: valid inputs made by the library's own encoders (a planned job's tasks, open
// record and deadline; partials and outputs for them; inference messages; .npy, safetensors and
// model files), plus a few hand-made variants the encoders never write (other .npy versions,
// F16/BF16/F64 tensors, legacy one-pair tasks, deep header tables). Written by
// `scripts/fuzz.sh --write-seeds`; regenerate when a format changes.
import Foundation
import SuccessiveRefinement

enum Seeds {
    static func write(to directory: String) throws {
        for (target, seeds) in try all() {
            let folder = "\(directory)/\(target)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (name, bytes) in seeds {
                try Data(bytes).write(to: URL(fileURLWithPath: "\(folder)/seed-\(name)"))
            }
        }
    }

    static func all() throws -> [String: [(String, [UInt8])]] {
        var out: [String: [(String, [UInt8])]] = [:]
        try wireSeeds(into: &out)
        fileSeeds(into: &out)
        try modelSeeds(into: &out)
        return out
    }

    static let created: Int64 = 1_800_000_000_000
    static let digestA = String(repeating: "ab", count: 32)
    static let digestB = String(repeating: "0f", count: 32)

    // MARK: Wire

    static func wireSeeds(into out: inout [String: [(String, [UInt8])]]) throws {
        func add(_ target: String, _ name: String, _ m: Message, kind: String) {
            let bytes = CompactMessage.encode(m, kind: kind)
            // A seed must read back as the message it came from, and be accepted: else the
            // compact format (or a decoder) has drifted and the seed only reaches the first check.
            let back = CompactMessage.message(bytes, kind: kind)
            precondition(back.headers == m.headers && back.body == m.body, "seed \(target)/\(name) does not read back")
            precondition(Targets.decodes(back), "seed \(target)/\(name) is refused by every decoder")
            out[target, default: []].append((name, bytes))
        }
        let submitter = JobSubmitter(transport: InMemoryTransport(broker: InMemoryBroker(clock: ContinuousClock())),
                                     wallClock: { created })
        let a = Matrix(rows: 4, columns: 3, elements: [1.5, -2.25, 3, 0.5, 7.75, -1, 0, 2, -3.5, 4, 1, 0.125])
        let x = Matrix(rows: 3, columns: 1, elements: [0.75, -1.5, 2])
        let x2 = Matrix(rows: 3, columns: 2, elements: [1, -2, 0.5, 3, -0.25, 1])
        let p2 = try PartitionVector([3, -1, -5]), p3 = try PartitionVector([3, 0, -3, -6])
        let requests: [(String, MatVecRequest)] = [
            ("layered-inline", MatVecRequest(operand: .inline(a), vectors: x, partitionA: p2, partitionX: p2,
                                             schedule: try .bySignificance(chunksA: 2, chunksX: 2), deadline: .seconds(5),
                                             rowBlock: 2, id: "seed-layered")),
            ("layered-stored", MatVecRequest(operand: .stored(digest: digestA, rows: 4, columns: 3), vectors: x2,
                                             partitionA: p3, partitionX: p2,
                                             schedule: try .onePairPerResolution(chunksA: 3, chunksX: 2),
                                             deadline: .milliseconds(250), rowBlock: 4, id: "seed_stored")),
            ("oneshot-inline", MatVecRequest(operand: .inline(a), vectors: x2, partitionA: p2, partitionX: p2,
                                             schedule: try .oneShot(chunksA: 2, chunksX: 2), deadline: .seconds(1),
                                             rowBlock: 3, mode: .oneShot, id: "seed-oneshot")),
        ]
        for (label, request) in requests {
            let plan = try submitter.plan(request)
            add("open", label, plan.open, kind: OpenRecord.kind)
            add("deadline", label, plan.deadline, kind: DeadlineMessage.kind)
            for (i, message) in plan.tasks.enumerated() where i < 3 {
                add("task", "\(label)-\(i)", message, kind: TaskMessage.kind)
                let task = try TaskMessage(decoding: message)
                let n = task.rows.count * task.vectors * max(1, task.pairs.count)
                // Small and wide values, so partials of both widths appear.
                let exact: [Int64] = (0..<n).map { (i: Int) -> Int64 in i % 2 == 0 ? Int64(i * 37) : Int64(i) - (1 << 40) }
                let values: [Double] = (0..<n).map { (i: Int) -> Double in i % 2 == 0 ? Double(i) * 0.5 : 0.1 * Double(i) }
                let partial = PartialMessage(for: task, computeMicroseconds: 120, worker: "seed-worker",
                                             exact: task.mode == .layered ? exact : [],
                                             values: task.mode == .oneShot ? values : [])
                add("partial", "\(label)-\(i)", partial.encode(), kind: PartialMessage.kind)
                add("task-failed", "\(label)-\(i)", TaskFailure(job: task.job, task: task.task, worker: "seed-worker",
                                                             reason: "operand not in the store").encode(), kind: TaskFailure.kind)
                if i == 0, task.mode == .layered, task.pairs.count == 1 {
                    // The first wire format's one-pair task: sr-chunk-a/-x instead of sr-pairs.
                    var legacy = message
                    legacy.headers[Header.pairs] = nil
                    legacy.headers[Header.chunkA] = .int(Int64(task.pairs[0].a))
                    legacy.headers[Header.chunkX] = .int(Int64(task.pairs[0].x))
                    add("task", "\(label)-legacy-pair", legacy, kind: TaskMessage.kind)
                }
            }
            let layers = (0..<plan.job.resolutionCount).map { ProgressMessage.Layer(done: $0, needed: max($0, plan.job.blockCount)) }
            add("progress", label, ProgressMessage(job: plan.job.id, elapsedMs: 12.5, layers: layers).encode(), kind: ProgressMessage.kind)
            let y = Matrix(rows: request.operand.rowsForSeeds, columns: request.vectors.columns,
                           elements: (0..<(request.operand.rowsForSeeds * request.vectors.columns)).map { Double($0) - 1.5 })
            let bound = y.map { abs($0) * 0.01 }
            add("output", "\(label)-partial", OutputMessage(job: plan.job.id, resolution: 1, of: plan.job.resolutionCount,
                                                            status: .partial, elapsedMs: 3.25, values: y, bound: bound).encode(),
                kind: OutputMessage.kind)
            add("output", "\(label)-deadline", OutputMessage(job: plan.job.id, resolution: 1, of: plan.job.resolutionCount,
                                                             status: .deadline, elapsedMs: 251, values: y, bound: bound,
                                                             lateMs: 1.5).encode(), kind: OutputMessage.kind)
        }
        add("output", "failed", OutputMessage.failed(job: "seed-failed", of: 3, elapsedMs: 0.5,
                                                     reason: "the answer would not fit a broker message").encode(),
            kind: OutputMessage.kind)

        let job = InferenceJob(id: "seed-infer", model: digestA, images: digestB, samples: 10, inputPartition: [1, -3, -7],
                               resolutions: 2, classes: 3, exitRule: "margin:0.3,0.6", blockSize: 5,
                               createdMs: created, deadline: Deadline(epochMs: created + 2_000))
        try job.validate()
        add("infer-open", "margin", try InferenceOpen(job: job).encode(), kind: InferenceOpen.kind)
        var gray = job
        (gray.classes, gray.exitRule) = (1, "gray-zone:0.3/0.6,0.4/0.55")
        add("infer-open", "gray-zone", try InferenceOpen(job: gray).encode(), kind: InferenceOpen.kind)
        for (r, indices) in [(1, [0, 1, 2, 3, 4]), (2, [1, 3, 9])] {
            let task = InferenceTask(job: job, resolution: r, indices: indices)
            add("infer-task", "r\(r)", task.encode(expiration: .seconds(2)), kind: InferenceTask.kind)
            let logits = indices.map { i in [Double(i) * 0.25, -1.5, 0.125 * Double(r)] }
            add("infer-partial", "r\(r)", InferencePartial(for: task, logits: logits, computeMicroseconds: 800,
                                                           worker: "seed-worker").encode(), kind: InferencePartial.kind)
        }
        let answers = [
            InferenceOutput.Answer(sample: 0, label: 2, resolution: 1, margin: 0.7, decided: true, logits: [0.1, -0.4, 0.8]),
            InferenceOutput.Answer(sample: 1, label: -1, resolution: 0, margin: 0, decided: false, logits: []),
        ]
        add("infer-output", "partial", try InferenceOutput(job: job.id, status: .partial, resolutions: 2, elapsedMs: 12.5,
                                                          skipped: 1, answers: answers).encode(), kind: InferenceOutput.kind)
        add("infer-output", "deadline", try InferenceOutput(job: job.id, status: .deadline, resolutions: 2, elapsedMs: 2001,
                                                           lateMs: 1, skipped: 0, answers: answers).encode(),
            kind: InferenceOutput.kind)

        // Header tables: a task's flat headers, a broker x-death record, too deep, too many.
        let death: HeaderValue = .array([.table(["count": .int(1), "queue": .string("sr.tasks"),
                                                 "reason": .string("expired"), "routing-keys": .array([.string("sr.tasks")])])])
        var withDeath = try submitter.plan(requests[0].1).tasks[0]
        withDeath.headers["x-death"] = death
        out["header-bounds", default: []].append(("task-headers", CompactMessage.encode(withDeath, kind: TaskMessage.kind)))
        out["task", default: []].append(("x-death", CompactMessage.encode(withDeath, kind: TaskMessage.kind)))
        var nested: HeaderValue = .string("leaf")
        for _ in 0..<HeaderBounds.maxDepth { nested = .array([nested]) }
        out["header-bounds", default: []].append(("depth-\(HeaderBounds.maxDepth)", [0] + CompactMessage.table(["x-death": nested])))
        out["header-bounds", default: []].append(("depth-\(HeaderBounds.maxDepth + 1)",
                                                  [0] + CompactMessage.table(["x-death": .array([nested])])))
        // Tag 8 (repeat) of a one-byte int: 1 + 4097 entries (one over the limit) and 1 + 4095 (at it).
        let key = UInt8(CompactMessage.names.firstIndex(of: "x-death")!)
        out["header-bounds", default: []].append(("over-entry-limit", [0, 1, key, 8, 0x01, 0x10, 1, 7]))
        out["header-bounds", default: []].append(("at-entry-limit", [0, 1, key, 8, 0xFF, 0x0F, 1, 7]))
    }

    // MARK: Files

    static func fileSeeds(into out: inout [String: [(String, [UInt8])]]) {
        func add(_ target: String, _ name: String, _ bytes: [UInt8]) { out[target, default: []].append((name, bytes)) }
        let arrays: [(String, NpyArray)] = [
            ("f8-2x3", NpyArray(shape: [2, 3], data: .float64([1, -2.5, 3, .pi, 0, -0.0]))),
            ("f4-5", NpyArray(shape: [5], data: .float32([1, 2, 3, .infinity, -7.5]))),
            ("i1-2x2x2", NpyArray(shape: [2, 2, 2], data: .int8([-128, -1, 0, 1, 2, 3, 4, 127]))),
            ("i4-scalar", NpyArray(shape: [], data: .int32([42]))),
            ("f8-0x3", NpyArray(shape: [0, 3], data: .float64([]))),
        ]
        for (name, array) in arrays { add("npy", name, Npy.encode(array)) }
        // Versions 2.0 and 3.0 (4-byte header length), Fortran order, a structured dtype.
        func npy(major: UInt8, _ header: String, data: [UInt8]) -> [UInt8] {
            let text = Array(header.utf8)
            let length = major == 1 ? [UInt8(text.count & 0xFF), UInt8(text.count >> 8)]
                                    : (0..<4).map { UInt8(truncatingIfNeeded: text.count >> (8 * $0)) }
            return [0x93] + Array("NUMPY".utf8) + [major, 0] + length + text + data
        }
        let four = [UInt8](repeating: 0x3F, count: 16)
        add("npy", "v2", npy(major: 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", data: four))
        add("npy", "v3-utf8", npy(major: 3, "{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (4L,), }\n", data: four))
        add("npy", "fortran", npy(major: 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 4), }\n", data: four))
        add("npy", "structured", npy(major: 1, "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }\n", data: four))

        let tensors = Safetensors.File(tensors: ["fc.weight": Tensor(shape: [2, 3], values: [1, -2, 0.5, 0, 3, -0.25]),
                                                 "fc.bias": Tensor(shape: [2], values: [0.1, -0.1]),
                                                 "scalar": Tensor(shape: [], values: [7])],
                                       metadata: ["note": "seed", "quote\"key": "tab\tvalue"])
        add("safetensors", "f32", Safetensors.encode(tensors))
        add("safetensors", "empty", Safetensors.encode(Safetensors.File(tensors: [:])))
        // The other dtypes the reader converts: F16, BF16, F64.
        let header = Array(#"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[4,8]},"d":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}}"#.utf8)
        let length = (0..<8).map { UInt8(truncatingIfNeeded: header.count >> (8 * $0)) }
        add("safetensors", "f16-bf16-f64", length + header + [0x00, 0x3C, 0x00, 0x7C, 0x80, 0x3F, 0xC0, 0xFF]
            + (0..<8).map { UInt8(truncatingIfNeeded: (-1.5).bitPattern >> (8 * $0)) })

        func be(_ v: UInt32) -> [UInt8] { (0..<4).reversed().map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        let idxImages = be(IDX.imagesMagic) + be(3) + be(2) + be(2) + (0..<12).map { UInt8($0 * 21) }
        add("idx", "images-3x2x2", idxImages)
        add("idx", "labels-3", be(IDX.labelsMagic) + be(3) + [7, 2, 1])

        let record = 1 + 3 * 32 * 32
        let cifar = (0..<(2 * record)).map { i in i % record == 0 ? UInt8(3 + 5 * (i / record)) : UInt8(truncatingIfNeeded: i * 7) }
        add("cifar", "2-records", cifar)
        let rows = [(0..<784).map { $0 % 29 == 0 ? "255" : "0" } + ["7"], (0..<784).map { String($0 % 256) } + ["2"]]
        let csv = Array((rows[0].joined(separator: ",") + "\n" + rows[1].joined(separator: ",") + "\r\n").utf8)
        add("mnist-csv", "2-rows", csv)

        add("image-file", "npy", [0, 0, 0] + Npy.encode(arrays[0].1))
        add("image-file", "cifar", [1, 1, 1] + cifar)
        add("image-file", "csv", [2, 0, 2] + csv)
        add("image-file", "idx", [3, 1, 0] + idxImages)
    }

    // MARK: Models

    static func modelSeeds(into out: inout [String: [(String, [UInt8])]]) throws {
        func tensor(_ shape: [Int]) -> Tensor {
            let n = shape.reduce(1, *)
            return Tensor(shape: shape, values: (0..<n).map { Float(($0 * 7) % 11) * 0.125 - 0.5 })
        }
        var mlp = ModelManifest(input: [4], layers: [.dense(weights: "fc1.weight", bias: "fc1.bias"), .relu,
                                                     .dense(weights: "fc2.weight", bias: "fc2.bias"), .softmax],
                                resolutions: 3, bitsPerUpgrade: 4, partitions: ["input": [1, -3, -7, -11]],
                                activationGrid: -12, classes: ["a", "b", "c"])
        mlp.exitRules = ["margin:0.3,0.6", "none"]
        let conv = ModelManifest(input: [1, 4, 4], layers: [.conv2d(weights: "conv.weight", bias: "conv.bias"), .relu,
                                                            .maxpool2, .flatten, .dense(weights: "fc.weight", bias: "fc.bias"),
                                                            .sigmoid],
                                 resolutions: 2, bitsPerUpgrade: 6)
        let models: [(String, Model)] = [
            ("mlp", Model(manifest: mlp, tensors: ["fc1.weight": tensor([5, 4]), "fc1.bias": tensor([5]),
                                                    "fc2.weight": tensor([3, 5]), "fc2.bias": tensor([3])])),
            ("conv", Model(manifest: conv, tensors: ["conv.weight": tensor([2, 1, 3, 3]), "conv.bias": tensor([2]),
                                                      "fc.weight": tensor([1, 8]), "fc.bias": tensor([1])])),
        ]
        for (name, model) in models {
            try model.validate()
            out["manifest", default: []].append((name, Model.encodeManifest(model.manifest)))
            // As Model.save(toFile:) writes it: the manifest in the safetensors metadata.
            let json = String(decoding: Model.encodeManifest(model.manifest, pretty: false), as: UTF8.self)
            out["model", default: []].append((name, Safetensors.encode(Safetensors.File(
                tensors: model.tensors, metadata: [ModelManifest.formatName: json]))))
        }
        let poolOnly = ModelManifest(input: [2, 8, 8], layers: [.maxpool2, .relu, .flatten, .softmax],
                                     resolutions: 1, bitsPerUpgrade: 8)
        out["manifest", default: []].append(("pool-only", Model.encodeManifest(poolOnly)))
    }
}

extension MatVecRequest.Operand {
    var rowsForSeeds: Int {
        switch self {
        case .stored(_, let rows, _): rows
        case .inline(let m): m.rows
        }
    }
}
