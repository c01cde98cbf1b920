// IDX files, the format of MNIST and Fashion-MNIST (uncompressed): unsigned-byte images
// (N×rows×columns) and labels, each checked against the sizes its header declares.

import Foundation

/// Reads IDX files of unsigned bytes. Layout: a big-endian magic `0x000008DD` (`08` = unsigned
/// byte, `DD` = number of dimensions), one big-endian `UInt32` per dimension, then the bytes in
/// C order. See http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS").
public enum IDX {
    /// Magic number of an images file: unsigned bytes, three dimensions (N, rows, columns).
    public static let imagesMagic: UInt32 = 0x0000_0803
    /// Magic number of a labels file: unsigned bytes, one dimension (N).
    public static let labelsMagic: UInt32 = 0x0000_0801

    /// The content of an images file; `pixels` holds `count × rows × columns` bytes, image-major.
    public struct Images: Sendable, Equatable {
        public let count: Int
        public let rows: Int
        public let columns: Int
        public let pixels: [UInt8]
    }

    // MARK: Files

    /// Reads an images file (magic `0x00000803`).
    public static func readImages(path: String) throws(DatasetError) -> Images {
        try withContents(of: path) { raw throws(DatasetError) in try decodeImages(raw, source: path) }
    }

    /// Reads a labels file (magic `0x00000801`).
    public static func readLabels(path: String) throws(DatasetError) -> [UInt8] {
        try withContents(of: path) { raw throws(DatasetError) in try decodeLabels(raw, source: path) }
    }

    /// Reads an images file and its labels file and checks that they describe the same items.
    public static func readLabelledImages(
        imagesPath: String, labelsPath: String
    ) throws(DatasetError) -> (images: Images, labels: [UInt8]) {
        let images = try readImages(path: imagesPath)
        let labels = try readLabels(path: labelsPath)
        guard images.count == labels.count else {
            throw DatasetError(.countMismatch, "\(imagesPath) holds \(images.count) images but \(labelsPath) "
                + "holds \(labels.count) labels; the two files do not belong together")
        }
        return (images, labels)
    }

    // MARK: Bytes

    /// Parses a complete images file; `source` (a path, usually) prefixes every error message.
    public static func decodeImages(_ raw: UnsafeRawBufferPointer, source: String = "<memory>") throws(DatasetError) -> Images {
        let dims = try header(raw, magic: imagesMagic, kind: "images", source: source)
        let body = try payload(raw, dimensions: dims, source: source)
        // Callers multiply rows × columns and build shapes from them even when the file holds no
        // images — where the payload check, a product with a 0 count, cannot catch an overflow.
        guard dims[1] >= 1, dims[2] >= 1, !dims[1].multipliedReportingOverflow(by: dims[2]).overflow else {
            throw DatasetError(.badHeader, "\(source): header declares images of \(dims[1])×\(dims[2]) pixels, "
                + "which no image has; \(DatasetError.refetchHint)")
        }
        return Images(count: dims[0], rows: dims[1], columns: dims[2], pixels: Array(body))
    }

    /// Parses a complete labels file; `source` (a path, usually) prefixes every error message.
    public static func decodeLabels(_ raw: UnsafeRawBufferPointer, source: String = "<memory>") throws(DatasetError) -> [UInt8] {
        let dims = try header(raw, magic: labelsMagic, kind: "labels", source: source)
        return Array(try payload(raw, dimensions: dims, source: source))
    }

    /// Checks the magic and returns the dimensions it announces.
    private static func header(
        _ raw: UnsafeRawBufferPointer, magic: UInt32, kind: String, source: String
    ) throws(DatasetError) -> [Int] {
        guard raw.count >= 4 else {
            throw DatasetError(.truncated, "\(source): \(raw.count) bytes, too short for an IDX header")
        }
        let found = bigEndianUInt32(raw, at: 0)
        guard found == magic else {
            throw DatasetError(.badMagic, "\(source): magic \(hex(found)), expected \(hex(magic)) for IDX "
                + "\(kind) of unsigned bytes; is this the right file, and uncompressed (not .gz)?")
        }
        let rank = Int(magic & 0xFF)
        guard raw.count >= 4 + 4 * rank else {
            throw DatasetError(.truncated, "\(source): ends inside the IDX header (\(raw.count) bytes, "
                + "\(4 + 4 * rank) needed); \(DatasetError.refetchHint)")
        }
        return (0..<rank).map { Int(bigEndianUInt32(raw, at: 4 + 4 * $0)) }
    }

    /// The data bytes after the header, which must be exactly as many as the dimensions say.
    private static func payload(
        _ raw: UnsafeRawBufferPointer, dimensions: [Int], source: String
    ) throws(DatasetError) -> UnsafeRawBufferPointer {
        let start = 4 + 4 * dimensions.count
        let available = raw.count - start
        let shape = dimensions.map(String.init).joined(separator: "×")
        // Three 32-bit dimensions can overflow Int; such a header cannot match any real file.
        var expected = 1, overflow = false
        for d in dimensions where !overflow { (expected, overflow) = expected.multipliedReportingOverflow(by: d) }
        guard !overflow, available >= expected else {
            throw DatasetError(.truncated, "\(source): header declares \(shape) bytes but only "
                + "\(available) follow; \(DatasetError.refetchHint)")
        }
        guard available == expected else {
            throw DatasetError(.trailingBytes, "\(source): \(available - expected) bytes follow the \(shape) "
                + "data the header declares; \(DatasetError.refetchHint)")
        }
        return UnsafeRawBufferPointer(rebasing: raw[start...])
    }

    private static func bigEndianUInt32(_ raw: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
        raw[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }

    // MARK: Reading files (shared with ImageDataset's loaders)

    /// Runs `body` on the bytes of the file at `path`, memory-mapped when possible so that the
    /// 47 MB Fashion-MNIST training images are not held twice while decoding.
    static func withContents<R>(
        of path: String, _ body: (UnsafeRawBufferPointer) throws(DatasetError) -> R
    ) throws(DatasetError) -> R {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            let missing = !FileManager.default.fileExists(atPath: path)
            throw DatasetError(.io, "\(path): " + (missing ? "no such file; \(DatasetError.refetchHint)"
                                                           : "cannot read: \(error.localizedDescription)"))
        }
        return try data.withUnsafeBytes { raw in
            Result { () throws(DatasetError) in try body(raw) }
        }.get()
    }
}
