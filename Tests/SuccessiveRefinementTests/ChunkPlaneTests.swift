// Chunk planes: narrowest storage, padded rows, exact reconstruction of the fixed-point value.
import Testing
@testable import SRCore

@Suite struct ChunkPlaneTests {
    @Test func storageIsTheNarrowestIntegerThatHoldsTheChunk() throws {
        let a = Matrix(rows: 3, columns: 5, elements: (0..<15).map { Double($0) - 7.3 })
        let p = try PartitionVector([4, -3, -11, -27])   // 7-, 8- and 16-bit chunks
        let op = try ChunkedOperand(decomposing: a, partition: p)
        guard case .int8 = op.planes[0].storage else { Issue.record("7-bit chunk not Int8"); return }
        guard case .int16 = op.planes[1].storage else { Issue.record("8-bit chunk not Int16"); return }
        guard case .int32 = op.planes[2].storage else { Issue.record("16-bit chunk not Int32"); return }
        #expect(op.planes[0].byteCount == 3 * 64)
    }

    @Test func rowsArePaddedWithZerosForSIMD() throws {
        let a = Matrix(rows: 2, columns: 70, repeating: -1.5)
        let op = try ChunkedOperand(decomposing: a, partition: PartitionVector([1, -3]))
        let plane = op.planes[0]
        #expect(plane.rowStride == 128)
        #expect(plane[1, 69] == -12)
        guard case .int8(let s) = plane.storage else { Issue.record("not Int8"); return }
        #expect(s.count == 2 * 128)
        #expect(s[70..<128].allSatisfy { $0 == 0 } && s[198..<256].allSatisfy { $0 == 0 })
    }

    @Test func reconstructionEqualsTheTruncatedFixedPointValue() throws {
        var g = SplitMix64(seed: 11)
        let d = DyadicMatrix(rows: 9, columns: 13, totalBits: 14, fractionBits: 9, using: &g)
        let p = try PartitionVector.uniform(p0: 5, chunks: 3, bits: 3)   // finest 2^-4
        let op = try ChunkedOperand(decomposing: d.matrix, partition: p)
        for r in 0..<9 {
            for c in 0..<13 {
                let v = d.matrix[r, c]
                let expected = Double(truncatedUnits(v, finestExponent: p.finestExponent)) * pow2(p.finestExponent)
                #expect(op.reconstructed(row: r, column: c) == expected)
            }
        }
        #expect(op.statistics.planeRowL1[0][0] == (0..<13).reduce(0.0) { $0 + Double(abs(op.planes[0][0, $1])) })
    }
}
