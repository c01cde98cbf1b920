// Fixed cases cross-checked against numpy (scripts/numpy_reference.py): chunks, every
// resolution and the bound against numpy's float64 product. Skipped, with the reason, when
// python3 or numpy is missing.
import Foundation
import Testing
@testable import SRCore
@testable import SRFormats
@testable import SRKernels

enum NumpyReference {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// True when `python3 -c "import numpy"` succeeds.
    static let isAvailable: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import numpy"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    /// Runs the reference script into a fresh directory and returns it.
    static func generate() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sr-numpy-\(UUID().uuidString)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", repositoryRoot.appendingPathComponent("scripts/numpy_reference.py").path, dir.path]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CocoaError(.executableLoad) }
        return dir
    }
}

@Suite(.enabled(if: NumpyReference.isAvailable, "python3 with numpy is not installed; the numpy cross-check is skipped"))
struct NumpyCrossCheckTests {
    struct Meta: Decodable { let p: [Int]; let q: [Int] }

    @Test(arguments: ["worked_example", "small_uniform", "mixed_widths", "float32_data"])
    func matchesNumpy(caseName: String) throws {
        let root = try NumpyReference.generate()
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent(caseName)
        func path(_ f: String) -> String { dir.appendingPathComponent(f).path }
        let meta = try JSONDecoder().decode(Meta.self, from: Data(contentsOf: URL(fileURLWithPath: path("meta.json"))))
        let a = try Npy.readMatrix(contentsOf: path("a.npy"))
        let x = try Npy.readMatrix(contentsOf: path("x.npy"))
        let p = try PartitionVector(meta.p), q = try PartitionVector(meta.q)

        // Chunks: numpy stores A's as (m·r) × n int32 and x's as m × n.
        let chunksA = try Npy.readMatrix(contentsOf: path("chunks_a.npy"))
        let ca = try ChunkedOperand(decomposing: a, partition: p)
        for k in 0..<p.chunkCount {
            for r in 0..<a.rows {
                for c in 0..<a.columns { #expect(Double(ca.planes[k][r, c]) == chunksA[k * a.rows + r, c]) }
            }
        }
        let chunksX = try Npy.readMatrix(contentsOf: path("chunks_x.npy"))
        let cx = try ChunkedOperand.vectors(x, partition: q)
        for k in 0..<q.chunkCount {
            for c in 0..<x.rows { #expect(Double(cx.planes[k][0, c]) == chunksX[k, c]) }
        }

        // Every resolution equals numpy's exact integer accumulation; each is within its
        // bound of numpy's float64 product (allowing numpy's own rounding, n·2^-52·Σ|a||x|).
        let expected = try Npy.readMatrix(contentsOf: path("resolutions.npy"))
        let float64 = try Npy.readMatrix(contentsOf: path("float64_product.npy"))
        let job = try LayeredProduct(matrix: a, vectors: x, partitionA: p, partitionX: q)
        var count = 0
        _ = try job.run { res in
            #expect(res.values.elements == (0..<a.rows).map { expected[res.index, $0] }, "resolution \(res.index)")
            for k in 0..<a.rows {
                let slack = Double(a.columns) * 0x1p-52 * (0..<a.columns).reduce(0.0) { $0 + abs(a[k, $1] * x[$1, 0]) }
                #expect(abs(float64[k, 0] - res.values[k, 0]) <= res.bound[k, 0] + slack)
            }
            count += 1
        }
        #expect(count == expected.rows)
    }
}
