// The exact split of METHOD.md §2: sign-magnitude, truncation toward zero, no silent wrap.
import Testing
@testable import SRCore

@Suite struct PartitionVectorTests {
    @Test func workedExampleFromThePaper() throws {
        let p = try PartitionVector([4, 0, -3])
        #expect(try p.chunks(of: -13.625) == [-13, -5])
        #expect(p.reconstruct([-13, -5]) == -13.625)
        #expect(p.bits(ofChunk: 0) == 4 && p.bits(ofChunk: 1) == 3)
    }

    @Test func truncatesTowardZeroNotRounding() throws {
        // 0.7 = 0.10110011…₂; two 1-bit chunks keep 0.1₂ = 0.5 then 0; rounding would give 0.75.
        let p = try PartitionVector([0, -1, -2])
        #expect(try p.chunks(of: 0.7) == [1, 0])
        #expect(try p.chunks(of: -0.7) == [-1, 0])
        // 0.99 with 3 one-bit chunks: 0.111₂ = 0.875 (rounding would carry into 1.0).
        #expect(try PartitionVector([0, -1, -2, -3]).chunks(of: 0.99) == [1, 1, 1])
    }

    @Test func keepsTheSignOnEveryChunk() throws {
        let p = try PartitionVector.uniform(p0: 3, chunks: 3, bits: 2)
        let c = try p.chunks(of: -5.3)
        #expect(c.allSatisfy { $0 <= 0 })
        #expect(c.contains { $0 < 0 })
    }

    @Test func refusesValuesAtOrAbove2ToP0InsteadOfWrapping() throws {
        let p = try PartitionVector([-1, -2, -3])
        // The reference code turns 0.7 into 0.2 here; we must refuse and say why.
        let error = #expect(throws: LayeringError.self) { try p.chunks(of: 0.7) }
        #expect(error?.code == .valueOutOfRange)
        #expect(error?.message.contains("0.7") == true)
        #expect(error?.message.contains("2^-1") == true)
        #expect(error?.message.contains("p_0 ≥ 0") == true)
        #expect(throws: LayeringError.self) { try p.chunks(of: -0.5) }   // |v| = 2^{p_0} is out too
        #expect(try p.chunks(of: 0.4999) == [1, 1])   // 0.4999 = 0.0111…₂ below 2^-1
    }

    @Test func refusesNonFiniteValues() throws {
        let p = try PartitionVector([4, 0])
        for v in [Double.nan, .infinity, -.infinity] {
            let error = #expect(throws: LayeringError.self) { try p.chunks(of: v) }
            #expect(error?.code == .nonFiniteValue)
        }
    }

    @Test func matrixDecompositionNamesTheOffendingElement() throws {
        let a = Matrix(rows: 2, columns: 2, elements: [0.5, 0.25, 3.0, 0.125])
        let error = #expect(throws: LayeringError.self) {
            try ChunkedOperand(decomposing: a, partition: PartitionVector([0, -4]))
        }
        #expect(error?.message.contains("A[1, 0]") == true)
        let x = Matrix(column: [0.5, .nan])
        let e2 = #expect(throws: LayeringError.self) {
            try ChunkedOperand.vectors(x, partition: PartitionVector([0, -4]))
        }
        #expect(e2?.message.contains("x[1] of vector 0") == true)
    }

    @Test func reconstructionErrorBelow2ToPrForRandomValues() throws {
        var g = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let p0 = Int.random(in: -6...6, using: &g)
            let m = Int.random(in: 1...5, using: &g)
            let b = Int.random(in: 1...9, using: &g)
            let p = try PartitionVector.uniform(p0: p0, chunks: m, bits: b)
            let v = Double.random(in: -1..<1, using: &g) * pow2(p0)
            let chunks = try p.chunks(of: v)
            for r in 1...m {
                let partial = p.reconstruct(chunks, using: r)
                #expect(abs(v - partial) < pow2(p.exponents[r]))
                // Truncation toward zero: never overshoots and keeps the sign.
                #expect(abs(partial) <= abs(v))
                #expect(partial == 0 || (partial < 0) == (v < 0))
            }
            for (k, c) in chunks.enumerated() { #expect(abs(c) <= p.chunkMagnitudeLimit(ofChunk: k)) }
        }
    }

    @Test func fittedP0IsTheSmallestThatHoldsTheData() throws {
        #expect(PartitionVector.smallestP0(above: 13.625) == 4)
        #expect(PartitionVector.smallestP0(above: 16) == 5)    // 16 is not < 2^4
        #expect(PartitionVector.smallestP0(above: 0.7) == 0)
        #expect(PartitionVector.smallestP0(above: 0.5) == 0)
        #expect(PartitionVector.smallestP0(above: 0.49) == -1)
        #expect(PartitionVector.smallestP0(above: 0) == 0)
        let p = try PartitionVector.fitted(maxMagnitude: 100, chunks: 2, bits: 4)
        #expect(p.exponents == [7, 3, -1])
        #expect(throws: Never.self) { try p.chunks(of: -100) }
    }

    @Test func rejectsMalformedPartitions() {
        for bad in [[3], [], [0, 0], [0, 1, -1], [40, 0], [500, 0]] {
            #expect(throws: LayeringError.self) { try PartitionVector(bad) }
        }
        #expect(throws: LayeringError.self) { try PartitionVector.uniform(p0: 0, chunks: 0, bits: 4) }
    }
}
