// A matrix–vector (or matrix–batch) job as the producer plans it and the aggregator tracks it.
import SRCoding
import SRCore

/// Y = A·X with a deadline, in resolutions (layered) or in one float32 pass (the baseline).
/// Serialised as JSON in the job's open record (docs/WIRE.md).
public struct MatVecJob: Sendable, Codable, Equatable {
    public enum Mode: String, Sendable, Codable {
        /// Successive refinement by chunk-pair layers.
        case layered
        /// One float32 pass over the same row blocks: what every benchmark compares against.
        case oneShot = "one-shot"
    }

    /// Letters, digits, '-' and '_' (it appears in routing keys); at most 64 characters.
    public var id: String
    public var mode: Mode
    /// SHA-256 digest of the registered matrix, or "inline" when tasks carry A's rows.
    public var matrix: String
    public var rows: Int
    public var columns: Int
    /// B, the number of vectors (1 for a mat-vec).
    public var vectors: Int
    public var partitionA: [Int]
    public var partitionX: [Int]
    /// The schedule: layers of [a, x] chunk pairs (0-based).
    public var layers: [[[Int]]]
    /// Rows per task: each mini-job is split into ⌈rows / rowBlock⌉ row-block tasks.
    public var rowBlock: Int
    /// Wall-clock milliseconds since the Unix epoch.
    public var createdMs: Int64
    public var deadline: Deadline
    /// N, the tasks issued per mini-job when it is coded (MiniJobCode: any K = `blockCount` of
    /// them decode it; N − K are parity blocks); nil (absent in JSON): uncoded, all K needed.
    public var codedTasks: Int?
    /// With `codedTasks`: the code covers layers 0..<codedLayers only (nil, absent in JSON: every
    /// layer). Coding the first layer alone protects the first resolution at a fraction of the
    /// cost of coding them all.
    public var codedLayers: Int?
    /// Ask the aggregator for a progress notice (ProgressMessage: tasks taken per layer) at most
    /// every this many ms while partials arrive; nil (absent in JSON): none.
    public var progressMs: Int?

    /// Most and fewest ms between progress notices: a watcher redraws a line, not a stream.
    public static let progressIntervals = 20...60_000

    /// The JSON keys of the open record (docs/WIRE.md): the deadline travels as `deadlineMs`.
    enum CodingKeys: String, CodingKey {
        case id, mode, matrix, rows, columns, vectors, partitionA, partitionX, layers, rowBlock, createdMs
        case deadline = "deadlineMs"
        case codedTasks, codedLayers, progressMs
    }

    public init(id: String, mode: Mode, matrix: String, rows: Int, columns: Int, vectors: Int,
                partitionA: [Int], partitionX: [Int], layers: [[[Int]]], rowBlock: Int,
                createdMs: Int64, deadline: Deadline, codedTasks: Int? = nil) {
        self.id = id
        self.mode = mode
        self.matrix = matrix
        self.rows = rows
        self.columns = columns
        self.vectors = vectors
        self.partitionA = partitionA
        self.partitionX = partitionX
        self.layers = layers
        self.rowBlock = rowBlock
        self.createdMs = createdMs
        self.deadline = deadline
        self.codedTasks = codedTasks
    }

    public static func isValidID(_ id: String) -> Bool {
        (1...64).contains(id.count) && id.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_"
        }
    }

    /// Bytes a task should read (about 1–3 ms of kernel time here): per-task costs (a broker
    /// round trip, decoding, a partial) are fixed, so tasks are sized by the compute they
    /// carry, not by a fixed number of rows.
    public static let taskBytesTarget = 64 << 20

    /// Rows per task for an r × n job so that each task reads about `taskBytesTarget`: a layered
    /// task reads each of its layer's planes (`bytesPerElement` bytes each, the widest chunk);
    /// a one-shot task reads float32 rows. Equal blocks, at least one row.
    public static func automaticRowBlock(rows: Int, columns: Int, mode: Mode, planesPerTask: Int,
                                         bytesPerElement: Int) -> Int {
        let perRow = mode == .oneShot ? columns * 4 : columns * max(1, planesPerTask) * max(1, bytesPerElement)
        let (total, overflow) = rows.multipliedReportingOverflow(by: perRow)
        let blocks = overflow ? rows : max(1, min(rows, (total + taskBytesTarget - 1) / taskBytesTarget))
        return (rows + blocks - 1) / blocks
    }

    /// Row blocks per mini-job (K): without a code, its tasks.
    public var blockCount: Int { (rows + rowBlock - 1) / rowBlock }

    /// The code of the coded layers' mini-jobs (uncoded unless `codedTasks` > K); valid once
    /// `validate()` passed.
    public var code: MiniJobCode {
        guard let n = codedTasks, let code = try? MiniJobCode(k: blockCount, n: n) else { return .uncoded(blocks: blockCount) }
        return code
    }

    /// The code of layer `layer`'s mini-jobs: `code` for layers below `codedLayers`, else uncoded.
    public func code(layer: Int) -> MiniJobCode {
        layer < (codedLayers ?? Int.max) ? code : .uncoded(blocks: blockCount)
    }

    public func rowRange(block: Int) -> Range<Int> {
        (block * rowBlock)..<min(rows, (block + 1) * rowBlock)
    }

    /// The deadline relative to the job's creation, as the user gave it.
    public var relativeDeadlineMs: Int64 { deadline.epochMs &- createdMs }

    /// R: resolutions this job can reach.
    public var resolutionCount: Int { mode == .oneShot ? 1 : layers.count }

    public func schedule() throws(LayeringError) -> LayerSchedule {
        try LayerSchedule(chunksA: partitionA.count - 1, chunksX: partitionX.count - 1,
                          layers: layers.map { $0.map { ChunkPair(a: $0.first ?? -1, x: $0.count == 2 ? $0[1] : -1) } })
    }

    /// Checks everything a consumer or aggregator relies on; the message says what is wrong.
    public func validate() throws(WireError) {
        guard Self.isValidID(id) else { throw WireError("job id '\(id)' must be 1–64 letters, digits, '-' or '_'") }
        let dims = 1...WireLimits.maxDimension
        guard dims.contains(rows), dims.contains(columns), dims.contains(vectors) else {
            throw WireError("job \(id): shape \(rows)×\(columns)·\(vectors) must have every dimension in \(dims)")
        }
        let results = try WireLimits.product(rows, vectors, "job \(id): result size")
        let xElements = try WireLimits.product(columns, vectors, "job \(id): vector block size")
        // Every output carries values and bounds (16 bytes per result element); a task carries x
        // at up to 4 bytes per element. Either must fit one broker message.
        let room = WireLimits.maxMessageBytes - WireLimits.messageHeadroom
        guard results <= room / 16 else {
            throw WireError("job \(id): its answer (\(rows)×\(vectors), \(16 * results) bytes with bounds) would not fit a broker message of \(WireLimits.maxMessageBytes) bytes; split x into batches of at most \(max(1, room / 16 / rows)) vectors")
        }
        guard xElements <= room / 4 else {
            throw WireError("job \(id): x (\(columns)×\(vectors)) would not fit a task message of \(WireLimits.maxMessageBytes) bytes; split x into batches of at most \(max(1, room / 4 / columns)) vectors")
        }
        guard (1...rows).contains(rowBlock) else { throw WireError("job \(id): rowBlock must be in 1...\(rows)") }
        guard (2...WireLimits.maxChunks + 1).contains(partitionA.count), (2...WireLimits.maxChunks + 1).contains(partitionX.count) else {
            throw WireError("job \(id): partitions must have 1...\(WireLimits.maxChunks) chunks")
        }
        guard WireLimits.creationRange.contains(createdMs) else {
            throw WireError("job \(id): createdMs \(createdMs) is not a plausible time (ms since the Unix epoch)")
        }
        guard matrix == "inline" || Digest.isValid(matrix) else {
            throw WireError("job \(id): matrix must be a SHA-256 digest or \"inline\"")
        }
        guard deadline.epochMs > createdMs, relativeDeadlineMs <= WireLimits.maxRelativeDeadlineMs else {
            throw WireError("job \(id): the deadline must be after creation and at most a day later")
        }
        // The aggregator keeps one bound term per chunk pair and result element.
        _ = try WireLimits.product((partitionA.count - 1) * (partitionX.count - 1), rows * vectors,
                                   "job \(id): bound terms (chunk pairs × result elements)")
        let p: PartitionVector, q: PartitionVector
        do {
            p = try PartitionVector(partitionA)
            q = try PartitionVector(partitionX)
            _ = try schedule()
        } catch {
            throw WireError("job \(id): \(error)")
        }
        if let n = codedTasks { try validateCode(tasks: n, p, q) }
        if let ms = progressMs, !Self.progressIntervals.contains(ms) {
            throw WireError("job \(id): progressMs must be in \(Self.progressIntervals) ms")
        }
        if let c = codedLayers {
            guard codedTasks != nil, (1...max(1, layers.count)).contains(c) else {
                throw WireError("job \(id): codedLayers must be 1…\(layers.count) and needs codedTasks")
            }
        }
    }

    /// A coded job: layered, registered A (consumers build the coded blocks from the store),
    /// a valid code, coded blocks of at most 31 bits and products the decoder solves exactly.
    private func validateCode(tasks n: Int, _ p: PartitionVector, _ q: PartitionVector) throws(WireError) {
        guard mode == .layered else { throw WireError("job \(id): coded tasks apply to layered jobs, not one-shot") }
        guard matrix != "inline" else {
            throw WireError("job \(id): coded tasks need a registered matrix (srproduce register): consumers build the coded blocks from the store")
        }
        let code: MiniJobCode
        do { code = try MiniJobCode(k: blockCount, n: n) } catch { throw WireError("job \(id): \(error)") }
        let widestA = (0..<p.chunkCount).map(p.chunkMagnitudeLimit(ofChunk:)).max() ?? 1
        let widestX = (0..<q.chunkCount).map(q.chunkMagnitudeLimit(ofChunk:)).max() ?? 1
        guard code.codedMagnitude(dataMagnitude: widestA) < (1 << 31),
              code.productBound(columns: columns, dataMagnitude: widestA, partnerMagnitude: widestX) != nil else {
            throw WireError("job \(id): \(n) coded tasks over \(blockCount) row blocks of \(widestA)-magnitude chunks would not decode exactly; use less redundancy, fewer row blocks or narrower chunks")
        }
    }
}
