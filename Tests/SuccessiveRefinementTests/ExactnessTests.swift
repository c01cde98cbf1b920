// The final resolution equals the fixed-point one-shot product Ã·X̃ bit for bit, checked
// against an independent Int128 computation from the original values (not from the chunks).
import Testing
@testable import SRCore
@testable import SRKernels

@Suite struct ExactnessTests {
    /// Ã·X̃ in units of 2^{p_n + q_n}, computed directly from the values.
    func independentFixedPoint(_ a: Matrix<Double>, _ x: Matrix<Double>,
                               _ p: PartitionVector, _ q: PartitionVector) -> [Int128] {
        let at = a.elements.map { truncatedUnits($0, finestExponent: p.finestExponent) }
        let xt = x.elements.map { truncatedUnits($0, finestExponent: q.finestExponent) }
        return exactIntegerProduct(at, xt, rows: a.rows, inner: a.columns, count: x.columns)
    }

    @Test(arguments: 0..<24)
    func finalResolutionIsTheFixedPointProductExactly(seed: Int) throws {
        var g = SplitMix64(seed: UInt64(seed) &* 0x9E37)
        let r = Int.random(in: 1...17, using: &g), n = Int.random(in: 1...40, using: &g)
        let count = Int.random(in: 1...3, using: &g)
        let a = DyadicMatrix(rows: r, columns: n, totalBits: Int.random(in: 4...20, using: &g),
                             fractionBits: Int.random(in: 0...16, using: &g), using: &g).matrix
        let x = DyadicMatrix(rows: n, columns: count, totalBits: Int.random(in: 4...20, using: &g),
                             fractionBits: Int.random(in: 0...16, using: &g), using: &g).matrix
        // Random partitions: uniform or arbitrary widths, p_0 fitted or with headroom.
        func randomPartition(_ data: Matrix<Double>) throws -> PartitionVector {
            let p0 = PartitionVector.smallestP0(above: data.maxMagnitude) + Int.random(in: 0...2, using: &g)
            var e = [p0]
            for _ in 0..<Int.random(in: 1...4, using: &g) { e.append(e.last! - Int.random(in: 1...12, using: &g)) }
            return try PartitionVector(e)
        }
        let p = try randomPartition(a), q = try randomPartition(x)
        let job = try LayeredProduct(matrix: a, vectors: x, partitionA: p, partitionX: q)
        var seen: [Int] = []
        let final = try job.run { seen.append($0.index) }
        #expect(seen == Array(0..<job.schedule.resolutionCount))
        #expect(final.isFinal)
        #expect(final.unitExponent == p.finestExponent + q.finestExponent)
        #expect(final.units == independentFixedPoint(a, x, p, q))
        // The Double values are the exact units correctly rounded.
        #expect(final.values.elements == final.units.map { Double($0) * pow2(final.unitExponent) })
    }

    @Test func everyKernelPathIsExact() throws {
        // 7×7-bit chunks → int8 SIMD; 12×7 → int16 SIMD; 8×8 → float32; 15×15 → float64;
        // 28×29 → int64 loop.
        var g = SplitMix64(seed: 99)
        for (bitsA, bitsX, expected) in [(7, 7, PreparedPlane.Path.int8SIMD), (12, 7, .int16SIMD), (8, 8, .float32BLAS),
                                         (15, 15, .float64BLAS), (28, 29, .integer)] {
            let n = 50, r = 33
            let av = (0..<(r * n)).map { _ in Int64.random(in: -(1 << bitsA) + 1 ..< (1 << bitsA), using: &g) }
            let xv = (0..<(2 * n)).map { _ in Int64.random(in: -(1 << bitsX) + 1 ..< (1 << bitsX), using: &g) }
            let a = ChunkPlane(rows: r, columns: n, bits: bitsA, values: av)
            let x = ChunkPlane(rows: 2, columns: n, bits: bitsX, values: xv)
            let prepared = PreparedPlane(a, partnerMagnitude: (1 << bitsX) - 1)
            #expect(prepared.path == expected)
            for batch in [x, ChunkPlane(rows: 1, columns: n, bits: bitsX, values: Array(xv[0..<n]))] {
                let got = prepared.product(batch)
                for k in 0..<r {
                    for b in 0..<batch.rows {
                        var s: Int64 = 0
                        for c in 0..<n { s += av[k * n + c] * xv[b * n + c] }
                        #expect(got[k, b] == s, "path \(expected) row \(k) vector \(b)")
                    }
                }
            }
            // A row block gives the same rows.
            let block = prepared.product(x, rows: 5..<12)
            let full = prepared.product(x)
            #expect(block.elements == Array(full.elements[(5 * 2)..<(12 * 2)]))
        }
    }

    @Test(arguments: 0...3)
    func everyInt8VariantIsExact(level: Int) {
        // Odd shapes (padding exercised) and the extreme values ±127 (overflow of 16-bit pairs).
        var g = SplitMix64(seed: UInt64(level) + 7)
        for (r, n) in [(1, 1), (7, 63), (13, 64), (5, 65), (33, 300), (3, 4097)] {
            let av = (0..<(r * n)).map { _ in Int64([-127, 127, Int64.random(in: -127...127, using: &g)].randomElement(using: &g)!) }
            let xv = (0..<n).map { _ in Int64([-127, 127, Int64.random(in: -127...127, using: &g)].randomElement(using: &g)!) }
            let a = ChunkPlane(rows: r, columns: n, bits: 7, values: av)
            let x = ChunkPlane(rows: 1, columns: n, bits: 7, values: xv)
            let got = Int8Kernel.product(a, x, rows: 0..<r, level: level)
            for k in 0..<r {
                var s: Int64 = 0
                for c in 0..<n { s += av[k * n + c] * xv[c] }
                #expect(got[k, 0] == s, "level \(level) shape \(r)×\(n) row \(k)")
            }
        }
    }

    @Test func resolutionsReleaseInOrderWhateverTheArrivalOrder() throws {
        var g = SplitMix64(seed: 5)
        let a = DyadicMatrix(rows: 6, columns: 10, totalBits: 12, fractionBits: 6, using: &g).matrix
        let x = DyadicMatrix(rows: 10, columns: 1, totalBits: 12, fractionBits: 6, using: &g).matrix
        let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: 3, bits: 4)
        let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: 3, bits: 4)
        let job = try LayeredProduct(matrix: a, vectors: x, partitionA: p, partitionX: q)
        var inOrder: [Resolution] = []
        _ = try job.run { inOrder.append($0) }

        let planes = job.preparedPlanes()
        var acc = try job.makeAccumulator()
        var released: [Resolution] = []
        for pair in job.schedule.layers.joined().reversed() {
            released += try acc.add(pair, product: planes[pair.a].product(job.vectors.planes[pair.x]))
            if pair != ChunkPair(a: 0, x: 0) { #expect(released.isEmpty) }
        }
        #expect(released.map(\.index) == [0, 1, 2, 3, 4])
        // Resolution ℓ holds exactly layers ≤ ℓ even though later layers arrived first.
        #expect(zip(released, inOrder).allSatisfy { $0.units == $1.units })
        // Resolution 0 is A_1·x_1 alone.
        let first = planes[0].product(job.vectors.planes[0])
        let shift = p.exponent(ofChunk: 0) + q.exponent(ofChunk: 0) - acc.unitExponent
        #expect(released[0].units == first.elements.map { Int128($0) << shift })
        // A duplicate is refused.
        let dup = #expect(throws: LayeringError.self) {
            try acc.add(ChunkPair(a: 1, x: 1), product: planes[1].product(job.vectors.planes[1]))
        }
        #expect(dup?.code == .duplicateMiniJob)
    }

    @Test func rejectsProductsThatCannotBeExact() throws {
        let p = try PartitionVector([31, 0]), q = try PartitionVector([31, 0])
        let s = try LayerSchedule.bySignificance(chunksA: 1, chunksX: 1)
        let error = #expect(throws: LayeringError.self) {
            try ResolutionAccumulator(schedule: s, partitionA: p, partitionX: q, rows: 1, vectors: 1,
                                      innerDimension: 4, bounds: nil)
        }
        #expect(error?.code == .notExact)
        #expect(throws: LayeringError.self) {
            try LayeredProduct(matrix: Matrix(rows: 2, columns: 3, repeating: 0.5), vectors: Matrix(column: [1, 2]),
                               partitionA: PartitionVector([0, -4]), partitionX: PartitionVector([2, -2]))
        }
    }
}
