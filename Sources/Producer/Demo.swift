// `srproduce demo`: shows successive refinement of one matrix–vector product in this process.
import ArgumentParser
import Foundation
import SuccessiveRefinement

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Refine one random matrix–vector product layer by layer, in this process.",
        discussion: """
            Splits a random n×n matrix A and vector x into m chunks of b bits each, computes the \
            mini-jobs A_i·x_j layer by layer with exact kernels and prints every resolution: \
            elapsed time, the rigorous error bound it ships with, and the actual error against \
            the float64 product. The distributed demo (producer, consumers and aggregator over \
            the in-memory transport) replaces this with issue B.
            """)

    @Option(name: .customShort("n"), help: "Matrix size (n×n).")
    var size: Int = 2048

    @Option(name: .customShort("m"), help: "Chunks per operand.")
    var chunks: Int = 3

    @Option(name: .customShort("b"), help: "Magnitude bits per chunk (≤ 7 keeps int8 planes).")
    var bits: Int = 5

    @Option(help: "Seed of the random operands.")
    var seed: UInt64 = 1

    func validate() throws {
        guard (1...16384).contains(size) else { throw ValidationError("-n must be in 1...16384") }
        guard (1...8).contains(chunks) else { throw ValidationError("-m must be in 1...8") }
        guard (1...15).contains(bits) else { throw ValidationError("-b must be in 1...15") }
    }

    func run() throws {
        BLAS.setThreadCount(1)
        var g = DemoRandom(seed: seed)
        let a = Matrix(rows: size, columns: size, elements: (0..<(size * size)).map { _ in Double.random(in: -1..<1, using: &g) })
        let x = Matrix(column: (0..<size).map { _ in Double.random(in: -1..<1, using: &g) })
        let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: chunks, bits: bits)
        let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: chunks, bits: bits)
        let clock = ContinuousClock()
        let matrix = try ChunkedOperand(decomposing: a, partition: p)
        let prepared = LayeredProduct.preparedPlanes(matrix, partitionX: q)
        let exact = OneShotProduct.product(a, x)
        print("A: \(size)×\(size), partition p = \(p), x: partition q = \(q)")
        let start = clock.now
        let job = try LayeredProduct(matrix: matrix, vectors: x, partitionX: q)
        print("schedule: \(job.schedule)  (kernel: \(prepared[0].path.rawValue))")
        print("resolution  elapsed_ms  max_bound      max_error_vs_float64")
        _ = try job.run(prepared: prepared) { res in
            let elapsed = clock.now - start
            let err = zip(res.values.elements, exact.elements).map { abs($0 - $1) }.max() ?? 0
            print("\(res.index + 1)/\(res.count)".padding(12) + ms(elapsed).padding(12)
                  + sci(res.maxBound).padding(15) + sci(err))
        }
    }

    func ms(_ d: Duration) -> String {
        String(format: "%.2f", Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) * 1e-15)
    }

    func sci(_ v: Double) -> String { String(format: "%.3e", v) }
}

/// SplitMix64: the demo's reproducible operands.
struct DemoRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
