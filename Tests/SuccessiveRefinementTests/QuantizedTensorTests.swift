// The fast split of QuantizedTensor against the reference split of PartitionVector (itself
// checked against exact arithmetic), element by element, including the values the fast path
// leaves to the reference: zeros, signs, range edges, tiny and out-of-range values.
import Testing
@testable import SRCore
@testable import SRNeural

@Suite struct QuantizedTensorTests {
    @Test(arguments: [[1, -1, -3, -5, -7, -9, -11], [0, -8, -16, -24], [40, 30, 1, -20], [-3, -4, -34]])
    func fastSplitEqualsTheReferenceSplit(_ exponents: [Int]) throws {
        let p = try PartitionVector(exponents)
        let limit = Double(sign: .plus, exponent: exponents[0], significand: 1)
        var g = SplitMix64(seed: UInt64(exponents.count * 1000 + exponents[0] + 100))
        var values = (0..<2000).map { _ in Double.random(in: -limit..<limit, using: &g) }
        values += [0, -0.0, limit.nextDown, -limit.nextDown, 0x1p-1070, -0x1p-1040, Double.leastNormalMagnitude,
                   Double(sign: .plus, exponent: exponents.last!, significand: 1), -Double(sign: .plus, exponent: exponents.last!, significand: 1)]
        let t = try QuantizedTensor(values: values, shape: [values.count], partition: p, name: "t")
        var buffer = [Int64](repeating: 0, count: p.chunkCount)
        for (e, v) in values.enumerated() {
            try p.split(v, into: &buffer, location: nil)
            #expect((0..<p.chunkCount).map { Int64(t.chunks[$0][e]) } == buffer, "value \(v)")
        }
        #expect(throws: LayeringError.self) { try QuantizedTensor(values: [0.5, limit], shape: [2], partition: p, name: "edge") }
        #expect(throws: LayeringError.self) { try QuantizedTensor(values: [.nan], shape: [1], partition: p, name: "nan") }
    }
}
