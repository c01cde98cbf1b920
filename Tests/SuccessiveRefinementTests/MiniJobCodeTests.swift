// The mini-job code: any K of N coded results decode the K row-block products bit for bit.
// The reference is the plain integer product of each row block of the original plane with x,
// computed here with Int64 loops — never with the code, its encoder or its decoder.
import Testing
@testable import SRCoding
@testable import SRCore
@testable import SRKernels

@Suite struct MiniJobCodeTests {
    /// Row block b of `values` (rows × n, row-major) times every row of `x` (count × n), plain.
    func referenceBlock(_ values: [Int64], rows: Int, n: Int, block b: Int, blockRows: Int,
                        x: [Int64], count: Int) -> [Int64] {
        var out = [Int64](repeating: 0, count: blockRows * count)
        for r in 0..<blockRows where b * blockRows + r < rows {
            for v in 0..<count {
                var s: Int64 = 0
                for c in 0..<n { s += values[(b * blockRows + r) * n + c] * x[v * n + c] }
                out[r * count + v] = s
            }
        }
        return out
    }

    /// Every coded block's product, computed the way a consumer does (encode, prepare, kernel).
    func codedResults(_ code: MiniJobCode, _ plane: ChunkPlane, blockRows: Int, _ x: ChunkPlane) -> [Int: [Int64]] {
        var results: [Int: [Int64]] = [:]
        for i in 0..<code.n {
            let block = code.encode(plane, block: i, blockRows: blockRows)
            results[i] = PreparedPlane(block, partnerMagnitude: x.maxMagnitude).product(x).elements
        }
        return results
    }

    func subsets(of n: Int, size k: Int) -> [[Int]] {
        guard k > 0 else { return [[]] }
        guard n >= k else { return [] }
        return subsets(of: n - 1, size: k - 1).map { $0 + [n - 1] } + subsets(of: n - 1, size: k)
    }

    @Test func everySubsetOfKDecodesExactly() throws {
        var g = SplitMix64(seed: 11)
        for k in 1...4 {
            for n in k...(k + 3) {
                let code = try MiniJobCode(k: k, n: n)
                let blockRows = 3, rows = k * blockRows - (k > 1 ? 1 : 0)   // last block padded
                let columns = 70, count = 2
                let av = (0..<(rows * columns)).map { _ in Int64.random(in: -127...127, using: &g) }
                let xv = (0..<(count * columns)).map { _ in Int64.random(in: -127...127, using: &g) }
                let plane = ChunkPlane(rows: rows, columns: columns, bits: 7, values: av)
                let x = ChunkPlane(rows: count, columns: columns, bits: 7, values: xv)
                let all = codedResults(code, plane, blockRows: blockRows, x)
                let expected = (0..<k).map {
                    referenceBlock(av, rows: rows, n: columns, block: $0, blockRows: blockRows, x: xv, count: count)
                }
                for subset in subsets(of: n, size: k) {
                    let got = try code.decode(all.filter { subset.contains($0.key) })
                    #expect(got == expected, "K=\(k) N=\(n) from \(subset)")
                }
            }
        }
    }

    @Test func randomSubsetsOfLargerCodesDecodeExactly() throws {
        var g = SplitMix64(seed: 12)
        for (k, omega) in [(8, 1.25), (6, 1.5), (5, 2.0), (16, 1.125)] {
            let code = try MiniJobCode(redundancy: omega, blocks: k)
            let blockRows = 4, rows = k * blockRows, columns = 129
            let av = (0..<(rows * columns)).map { _ in Int64([-127, 127, Int64.random(in: -127...127, using: &g)].randomElement(using: &g)!) }
            let xv = (0..<columns).map { _ in Int64([-127, 127, Int64.random(in: -127...127, using: &g)].randomElement(using: &g)!) }
            let plane = ChunkPlane(rows: rows, columns: columns, bits: 7, values: av)
            let x = ChunkPlane(rows: 1, columns: columns, bits: 7, values: xv)
            let all = codedResults(code, plane, blockRows: blockRows, x)
            let expected = (0..<k).map {
                referenceBlock(av, rows: rows, n: columns, block: $0, blockRows: blockRows, x: xv, count: 1)
            }
            for _ in 0..<20 {
                let keep = Set((0..<code.n).shuffled(using: &g).prefix(k))
                #expect(try code.decode(all.filter { keep.contains($0.key) }) == expected, "K=\(k) N=\(code.n) from \(keep.sorted())")
            }
        }
    }

    @Test func redundancySetsTheNumberOfTasks() throws {
        #expect(try MiniJobCode(redundancy: 1.5, blocks: 4).n == 6)
        #expect(try MiniJobCode(redundancy: 1.25, blocks: 4).n == 5)
        #expect(try MiniJobCode(redundancy: 1.25, blocks: 2).n == 3)
        #expect(try MiniJobCode(redundancy: 1, blocks: 4).n == 4)
        #expect(try !MiniJobCode(redundancy: 1, blocks: 4).isCoded)
        #expect(try MiniJobCode(redundancy: 1.1, blocks: 10).n == 11)
    }

    @Test func shapesAndWidthsOutOfRangeAreRefused() {
        #expect(throws: MiniJobCodeError.self) { try MiniJobCode(k: 0, n: 1) }
        #expect(throws: MiniJobCodeError.self) { try MiniJobCode(k: 4, n: 3) }
        #expect(throws: MiniJobCodeError.self) { try MiniJobCode(k: 65, n: 65) }
        #expect(throws: MiniJobCodeError.self) { try MiniJobCode(k: 4, n: 13) }
        #expect(throws: MiniJobCodeError.self) { try MiniJobCode(redundancy: 0.5, blocks: 4) }
        #expect(throws: MiniJobCodeError.self) { try MiniJobCode(redundancy: .nan, blocks: 4) }
        // 8 parity blocks over 12 row blocks: coefficients up to 8^11 = 2^33.
        do {
            _ = try MiniJobCode(k: 12, n: 20)
            Issue.record("a code with coefficients beyond 2^31 was accepted")
        } catch {
            #expect("\(error)".contains("fewer, larger row blocks"))
        }
        // A product bound at or beyond 2^60 is refused (the decode would not be exact).
        let code = try! MiniJobCode(k: 4, n: 6)
        #expect(code.productBound(columns: 4096, dataMagnitude: 127, partnerMagnitude: 127) != nil)
        #expect(code.productBound(columns: 1 << 20, dataMagnitude: 1 << 30, partnerMagnitude: 1 << 20) == nil)
        #expect(throws: MiniJobCodeError.notEnoughResults(have: 3, need: 4)) {
            try code.decode([0: [1], 1: [2], 5: [3]])
        }
    }

    @Test func aCorruptedCodedResultIsDetectedAndLocated() throws {
        var g = SplitMix64(seed: 13)
        let code = try MiniJobCode(k: 4, n: 7)
        let blockRows = 5, rows = 20, columns = 64
        let av = (0..<(rows * columns)).map { _ in Int64.random(in: -127...127, using: &g) }
        let xv = (0..<columns).map { _ in Int64.random(in: -127...127, using: &g) }
        let plane = ChunkPlane(rows: rows, columns: columns, bits: 7, values: av)
        let x = ChunkPlane(rows: 1, columns: columns, bits: 7, values: xv)
        let honest = codedResults(code, plane, blockRows: blockRows, x)
        #expect(try code.isConsistent(honest))
        #expect(try code.corruptedResult(honest) == nil)
        for victim in 0..<code.n {
            var forged = honest
            forged[victim]![2] += 1
            // K + 1 results including the forged one: detected.
            let others = (0..<code.n).filter { $0 != victim }.prefix(code.k)
            let kPlusOne = forged.filter { others.contains($0.key) || $0.key == victim }
            #expect(try !code.isConsistent(kPlusOne), "victim \(victim)")
            // All N = K + 3 results: located.
            #expect(try code.corruptedResult(forged) == victim)
        }
    }

    @Test(arguments: 0...3)
    func everyInt16VariantIsExact(level: Int) {
        // Extreme values make 32-bit lane sums overflow unless they are widened in time:
        // 8192 columns of 32767 · 127 sum to 3.4 · 10^10.
        var g = SplitMix64(seed: UInt64(level) + 21)
        for (r, n, extreme) in [(1, 1, false), (7, 63, false), (5, 65, false), (3, 4097, false), (2, 8192, true)] {
            let av: [Int64] = (0..<(r * n)).map { _ in
                extreme ? 32767 : Int64([-32767, 32767, Int64.random(in: -32767...32767, using: &g)].randomElement(using: &g)!)
            }
            let xv: [Int64] = (0..<n).map { _ in extreme ? 127 : Int64.random(in: -127...127, using: &g) }
            let a = ChunkPlane(rows: r, columns: n, bits: 15, values: av)
            let x = ChunkPlane(rows: 1, columns: n, bits: 7, values: xv)
            let got = Int16Kernel.product(a, x, rows: 0..<r, level: level)
            for k in 0..<r {
                var s: Int64 = 0
                for c in 0..<n { s += av[k * n + c] * xv[c] }
                #expect(got[k, 0] == s, "level \(level) shape \(r)×\(n) row \(k)")
            }
        }
    }

    @Test func parityBlocksOfInt8PlanesAreNarrowIntegers() throws {
        // K = 4 with two parity blocks: coefficient sums 4 and 15, so |coded| ≤ 15 · 127 — int16,
        // on the SIMD kernel, not a floating-point path.
        let code = try MiniJobCode(k: 4, n: 6)
        let plane = ChunkPlane(rows: 8, columns: 64, bits: 7, values: (0..<512).map { Int64($0 % 255) - 127 })
        let parity = code.encode(plane, block: 5, blockRows: 2)
        guard case .int16 = parity.storage else { Issue.record("parity stored as \(parity.storage)"); return }
        #expect(PreparedPlane(parity, partnerMagnitude: 127).path == .int16SIMD)
        #expect(parity.maxMagnitude <= 15 * 127)
    }
}
