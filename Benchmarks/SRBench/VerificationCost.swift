// What verifiable answers cost the aggregator (docs/TRUST.md): the one-time row checksums of a
// registered matrix (per partition, mode and row block), and the per-job and per-partial work
// against the consumer's own kernel time for the same partial.
import ArgumentParser
import SRAggregation
import SRCore
import SRProtocol

struct VerificationCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-cost",
        abstract: "Time the aggregator's checksums against the products they check.",
        discussion: """
            For each size n: a random n×n matrix A and vector x in [-1, 1), m chunks of --bits \
            bits, the row block a producer picks automatically. Reports (medians of --repeat runs, \
            ms) A's decomposition and the row checksums built once per matrix, x's per-job \
            preparation, checking one layer-0 partial, and the consumer's int8 product for the \
            same task for comparison.
            """)

    @Option(help: "Matrix sizes n (n×n), comma separated.")
    var sizes: String = "1024,4096"

    @Option(help: "Chunks per operand.")
    var chunks: Int = 2

    @Option(help: "Magnitude bits per chunk.")
    var bits: Int = 4

    @Option(help: "Timed runs per figure (the median is reported).")
    var `repeat`: Int = 5

    func run() throws {
        print("medians of \(`repeat`) runs, ms; m = \(chunks), \(bits)-bit chunks\n")
        print("| n | row block | A decomposition (once) | row checksums (once) | x per job | check one partial | int8 product of that task |")
        print("|---|---|---|---|---|---|---|")
        for n in sizes.split(separator: ",").compactMap({ Int($0) }) {
            var g = SplitMix64(seed: UInt64(n))
            let a = Matrix(rows: n, columns: n, elements: (0..<(n * n)).map { _ in Double(Float.random(in: -1..<1, using: &g)) })
            let x = Matrix(column: (0..<n).map { _ in Double(Float.random(in: -1..<1, using: &g)) })
            let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: chunks, bits: bits)
            let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: chunks, bits: bits)
            let schedule = try LayerSchedule.bySignificance(chunksA: chunks, chunksX: chunks)
            let rowBlock = MatVecJob.automaticRowBlock(rows: n, columns: n, mode: .layered,
                                                       planesPerTask: schedule.layers.map(\.count).max() ?? 1, bytesPerElement: 1)
            let job = MatVecJob(id: "bench", mode: .layered, matrix: String(repeating: "0", count: 64), rows: n, columns: n, vectors: 1,
                                partitionA: p.exponents, partitionX: q.exponents, layers: schedule.layers.map { $0.map { [$0.a, $0.x] } },
                                rowBlock: rowBlock, createdMs: 1_800_000_000_000, deadline: Deadline(epochMs: 1_800_000_060_000))
            var chunked: ChunkedOperand!
            let decomposition = try median { chunked = try ChunkedOperand(decomposing: a, partition: p) }
            var random = SystemRandomNumberGenerator()
            var checksums: RowChecksums!
            let build = median { checksums = RowChecksums.layered(job: job, a: chunked.planes, using: &random) }
            var verifier: PartialVerifier!
            let perJob = try median {
                let cx = try ChunkedOperand.vectors(x, partition: q)
                verifier = PartialVerifier(job: job, checksums: checksums, x: x, xPlanes: cx.planes)
            }
            // The layer-0 task of block 0, computed as a consumer would, then checked.
            let cx = try ChunkedOperand.vectors(x, partition: q)
            let pair = schedule.layers[0][0]
            let rows = job.rowRange(block: 0)
            var exact: [Int64] = []
            let product = median {
                exact = rows.map { r in (0..<n).reduce(Int64(0)) { $0 + chunked.planes[pair.a][r, $1] * cx.planes[pair.x][0, $1] } }
            }
            let task = TaskMessage(job: job.id, task: "bench/L0/0", mode: .layered, layer: 0, pairs: [pair], rows: rows,
                                   totalRows: n, columns: n, vectors: 1, deadline: job.deadline, matrix: job.matrix,
                                   partitionA: job.partitionA, partitionX: job.partitionX, vectorChunks: [], vectorValues: [], inlineRows: [])
            let partial = PartialMessage(for: task, computeMicroseconds: 0, worker: "bench", exact: exact, values: [])
            var failure: String?
            let check = median { failure = verifier.failure(of: partial, block: 0) }
            guard failure == nil else { throw ValidationError("an honest partial failed its check: \(failure!)") }
            print("| \(n) | \(rowBlock) | \(f(decomposition)) | \(f(build)) | \(f(perJob)) | \(f(check)) | \(f(product)) (scalar loop) |")
        }
    }

    func f(_ seconds: Double) -> String { String(format: "%.2f", seconds * 1000) }

    func median(_ body: () throws -> Void) rethrows -> Double {
        let clock = ContinuousClock()
        var times: [Double] = []
        for _ in 0..<max(1, `repeat`) {
            let t = try clock.measure(body)
            times.append(t.seconds)
        }
        times.sort()
        return times[times.count / 2]
    }
}
