// Property: |exact A·X − resolution ℓ| ≤ bound ℓ elementwise, and bounds never grow with ℓ.
import Testing
@testable import SRCore
@testable import SRKernels

@Suite struct ErrorBoundTests {
    @Test(arguments: 0..<30)
    func boundHoldsAndShrinks(seed: Int) throws {
        var g = SplitMix64(seed: UInt64(seed) + 1000)
        let r = Int.random(in: 1...12, using: &g), n = Int.random(in: 1...48, using: &g)
        let count = Int.random(in: 1...3, using: &g)
        let da = DyadicMatrix(rows: r, columns: n, totalBits: Int.random(in: 6...24, using: &g),
                              fractionBits: 20, using: &g)
        let dx = DyadicMatrix(rows: n, columns: count, totalBits: Int.random(in: 6...24, using: &g),
                              fractionBits: 20, using: &g)
        let m = Int.random(in: 1...4, using: &g), b = Int.random(in: 2...6, using: &g)
        let p = try PartitionVector.fitted(maxMagnitude: da.matrix.maxMagnitude, chunks: m, bits: b)
        let q = try PartitionVector.fitted(maxMagnitude: dx.matrix.maxMagnitude, chunks: Int.random(in: 1...4, using: &g), bits: b)
        let schedule: LayerSchedule
        if Bool.random(using: &g) {
            schedule = try .bySignificance(chunksA: p.chunkCount, chunksX: q.chunkCount)
        } else {
            schedule = try .onePairPerResolution(chunksA: p.chunkCount, chunksX: q.chunkCount)
        }
        let job = try LayeredProduct(matrix: da.matrix, vectors: dx.matrix, partitionA: p, partitionX: q, schedule: schedule)

        // The exact real product of the operands, in units of 2^−40 (both have 20 fraction bits).
        let exact = exactIntegerProduct(da.integers.map { Int128($0) }, dx.integers.map { Int128($0) },
                                        rows: r, inner: n, count: count)
        var previous: Resolution?
        _ = try job.run { res in
            let unit = min(res.unitExponent, -40)
            for e in 0..<exact.count {
                let exactUnits = exact[e] << (-40 - unit)
                let resUnits = res.units[e] << (res.unitExponent - unit)
                let error = Double((exactUnits - resUnits).magnitude) * pow2(unit)
                #expect(error <= res.bound.elements[e], "resolution \(res.index) element \(e)")
                // The reported Double is within its bound too.
                let exactValue = Double(exact[e]) * pow2(-40)
                #expect(abs(exactValue - res.values.elements[e]) <= res.bound.elements[e] * (1 + 0x1p-40))
            }
            if let previous {
                for e in 0..<exact.count { #expect(res.bound.elements[e] <= previous.bound.elements[e]) }
                #expect(res.maxBound <= previous.maxBound)
            }
            previous = res
        }
    }

    @Test func boundsShrinkByAboutTwoToTheMinusBPerLayer() throws {
        var g = SplitMix64(seed: 3)
        let a = DyadicMatrix(rows: 64, columns: 64, totalBits: 30, fractionBits: 30, using: &g).matrix
        let x = DyadicMatrix(rows: 64, columns: 1, totalBits: 30, fractionBits: 30, using: &g).matrix
        let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: 4, bits: 6)
        let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: 4, bits: 6)
        let job = try LayeredProduct(matrix: a, vectors: x, partitionA: p, partitionX: q)
        var bounds: [Double] = []
        _ = try job.run { bounds.append($0.maxBound) }
        #expect(bounds.count == 7)
        // Each of the first layers removes the dominant remaining term: a factor ≥ 2^4 of 2^6.
        for l in 1..<4 { #expect(bounds[l] < bounds[l - 1] / 16, "layer \(l): \(bounds)") }
        // The final bound is the truncation residual alone, far below the first.
        #expect(bounds[6] < bounds[0] * 0x1p-16)   // 24 kept bits: only the truncation residual remains
    }
}
