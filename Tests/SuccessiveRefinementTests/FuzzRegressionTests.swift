// Inputs the fuzz harness (Fuzz/, scripts/fuzz.sh) found crashing a reader, fixed in the reader
// and kept here as unit tests; the same inputs live in Fuzz/regressions/<target>/.

import Foundation
import Testing
@testable import SRFormats

@Suite struct FuzzRegressionTests {
    private static func bigEndian(_ values: [UInt32]) -> [UInt8] {
        values.flatMap { v in withUnsafeBytes(of: v.bigEndian) { Array($0) } }
    }

    /// Runs `body` with a fresh directory under the system temp dir, removed afterwards.
    private static func withScratchDirectory<R>(_ body: (String) throws -> R) throws -> R {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-regression-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        return try body(dir.path)
    }

    /// Fuzz/regressions/image-file/idx-no-images-of-overflowing-size: no images, but each
    /// declared 3 170 762 730 × 3 585 987 303 pixels. The payload check multiplies by the count
    /// (0) and passed; ImageFile.read then trapped on rows × columns.
    @Test func idxImagesOfOverflowingSizeAreRefused() throws {
        let file = Self.bigEndian([IDX.imagesMagic, 0, 0xBCFD_FFEA, 0xD5BD_D2E7])
        let error = #expect(throws: DatasetError.self) { try file.withUnsafeBytes { try IDX.decodeImages($0) } }
        #expect(error?.code == .badHeader)
        #expect(error?.description.contains("3170762730×3585987303 pixels") == true)
        try Self.withScratchDirectory { dir in
            let path = dir + "/images-idx3-ubyte"
            try Data(file).write(to: URL(fileURLWithPath: path))
            #expect(throws: DatasetError.self) { try ImageFile.read(path) }
        }
    }

    /// Fuzz/regressions/idx/images-of-zero-rows: one image of 0 × 5 pixels (0 payload bytes, so
    /// the sizes matched); the Fashion-MNIST loader then failed ImageDataset's precondition that
    /// an image shape is positive.
    @Test func idxImagesWithoutRowsOrColumnsAreRefused() throws {
        for (rows, columns) in [(0, 5), (5, 0), (0, 0)] as [(UInt32, UInt32)] {
            let file = Self.bigEndian([IDX.imagesMagic, 1, rows, columns])
            let error = #expect(throws: DatasetError.self) { try file.withUnsafeBytes { try IDX.decodeImages($0) } }
            #expect(error?.code == .badHeader)
            try Self.withScratchDirectory { dir in
                try Data(file).write(to: URL(fileURLWithPath: dir + "/t10k-images-idx3-ubyte"))
                try Data(Self.bigEndian([IDX.labelsMagic, 1]) + [3]).write(to: URL(fileURLWithPath: dir + "/t10k-labels-idx1-ubyte"))
                #expect(throws: DatasetError.self) { try ImageDataset.fashionMNIST(directory: dir, split: .test) }
            }
        }
    }

    /// The smallest real images file still reads: one 1 × 1 image.
    @Test func idxOneByOneImageStillReads() throws {
        let file = Self.bigEndian([IDX.imagesMagic, 1, 1, 1]) + [255]
        let images = try file.withUnsafeBytes { try IDX.decodeImages($0) }
        #expect(images.count == 1 && images.rows == 1 && images.columns == 1 && images.pixels == [255])
    }
}
