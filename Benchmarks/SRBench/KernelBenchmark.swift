// The kernel benchmark of docs/BENCHMARKS.md: one-shot sgemv versus chunk-plane products,
// first resolution and all resolutions, for square matrices of several sizes.
import ArgumentParser
import SRCore
import SRKernels

struct KernelBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Time one-shot sgemv against the layered product of the same matrix.",
        discussion: """
            For each size n and chunk count m, builds a random n×n float32 matrix A and vector x \
            in [-1, 1), splits both into m chunks of --bits bits, and reports medians of --repeat \
            runs: the one-shot sgemv, one chunk-plane product (BLAS path and the portable int8 \
            loop), time to the first resolution and to all resolutions (each ÷ one shot, x's \
            decomposition and accumulation included; A's planes are prepared once, as a consumer \
            caches a registered matrix), and the bytes per second each kernel reads.
            """)

    @Option(help: "Matrix sizes n (n×n), comma separated.")
    var sizes: String = "1024,4096,8192"

    @Option(help: "Chunk counts m for both operands, comma separated.")
    var chunks: String = "2,4"

    @Option(help: "Magnitude bits per chunk.")
    var bits: Int = 4

    @Option(help: "Timed runs per figure (the median is reported); 0 picks by size.")
    var `repeat`: Int = 0

    @Option(help: "OpenBLAS threads (consumers run 1).")
    var threads: Int = 1

    func validate() throws {
        guard parse(sizes).allSatisfy({ $0 >= 1 }), !parse(sizes).isEmpty else {
            throw ValidationError("--sizes must be positive integers, e.g. 1024,4096")
        }
        guard parse(chunks).allSatisfy({ $0 >= 1 }), !parse(chunks).isEmpty else {
            throw ValidationError("--chunks must be positive integers, e.g. 2,4")
        }
        guard (1...7).contains(bits) else { throw ValidationError("--bits must be in 1...7 (int8 chunk planes)") }
    }

    func parse(_ list: String) -> [Int] { list.split(separator: ",").compactMap { Int($0) } }

    func run() throws {
        BLAS.setThreadCount(threads)
        print("OpenBLAS threads: \(BLAS.threadCount); int8 kernel: \(Int8Kernel.instructionSet); medians; times in ms; ratios ÷ one-shot sgemv\n")
        print("| n | m | bits | one-shot sgemv | plane f32 BLAS | plane int8 | first ÷ one-shot (int8) | all ÷ one-shot (int8) | first ÷ one-shot (BLAS) | all ÷ one-shot (BLAS) | GB/s sgemv | GB/s int8 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n in parse(sizes) {
            var g = SplitMix64(seed: UInt64(n))
            let a = Matrix(rows: n, columns: n, elements: (0..<(n * n)).map { _ in Float.random(in: -1..<1, using: &g) })
            let x = Matrix(column: (0..<n).map { _ in Float.random(in: -1..<1, using: &g) })
            let a64 = a.map(Double.init), x64 = x.map(Double.init)
            let reps = `repeat` > 0 ? `repeat` : max(5, min(50, 400_000_000 / (n * n)))
            let oneShot = median(reps) { _ = OneShotProduct.product(a, x) }
            for m in parse(chunks) {
                let p = try PartitionVector.fitted(maxMagnitude: a64.maxMagnitude, chunks: m, bits: bits)
                let q = try PartitionVector.fitted(maxMagnitude: x64.maxMagnitude, chunks: m, bits: bits)
                let matrix = try ChunkedOperand(decomposing: a64, partition: p)
                let partner = (0..<q.chunkCount).map(q.chunkMagnitudeLimit(ofChunk:)).max() ?? 1
                let int8 = matrix.planes.map { PreparedPlane($0, partnerMagnitude: partner) }
                let blas = matrix.planes.map { PreparedPlane($0, partnerMagnitude: partner, allowInt8: false) }
                let probe = try LayeredProduct(matrix: matrix, vectors: x64, partitionX: q)
                let xPlane = probe.vectors.planes[0]
                let planeBLAS = median(reps) { _ = blas[0].product(xPlane) }
                let planeInt8 = median(reps) { _ = int8[0].product(xPlane) }
                func first(_ prepared: [PreparedPlane]) -> Double {
                    median(reps) {
                        let job = try! LayeredProduct(matrix: matrix, vectors: x64, partitionX: q)
                        var acc = try! job.makeAccumulator()
                        for pair in job.schedule.layers[0] {
                            _ = try! acc.add(pair, product: prepared[pair.a].product(job.vectors.planes[pair.x]))
                        }
                    }
                }
                func all(_ prepared: [PreparedPlane]) -> Double {
                    median(max(3, reps / 2)) {
                        let job = try! LayeredProduct(matrix: matrix, vectors: x64, partitionX: q)
                        _ = try! job.run(prepared: prepared)
                    }
                }
                let gbOneShot = Double(n * n * 4) / oneShot / 1e9
                let gbInt8 = Double(int8[0].bytesPerPass) / planeInt8 / 1e9
                print("| \(n) | \(m) | \(bits) | \(ms(oneShot)) | \(ms(planeBLAS)) | \(ms(planeInt8)) | "
                      + "\(ratio(first(int8) / oneShot)) | \(ratio(all(int8) / oneShot)) | "
                      + "\(ratio(first(blas) / oneShot)) | \(ratio(all(blas) / oneShot)) | \(ratio(gbOneShot)) | \(ratio(gbInt8)) |")
            }
        }
    }

    func ms(_ seconds: Double) -> String { String(format3: seconds * 1000) }
    func ratio(_ r: Double) -> String { String(format3: r) }

    /// The median wall time of `count` runs of `body`, in seconds (after one warm-up run).
    func median(_ count: Int, _ body: () throws -> Void) rethrows -> Double {
        try body()
        let clock = ContinuousClock()
        var times: [Double] = []
        for _ in 0..<count {
            let t = try clock.measure(body)
            times.append(t.seconds)
        }
        times.sort()
        return times[times.count / 2]
    }
}


extension String {
    /// Three significant decimals without Foundation's String(format:).
    init(format3 v: Double) {
        let scaled = (v * 1000).rounded()
        let whole = Int(scaled) / 1000, frac = abs(Int(scaled) % 1000)
        let f = String(frac)
        self = "\(whole).\(String(repeating: "0", count: 3 - f.count))\(f)"
    }
}
