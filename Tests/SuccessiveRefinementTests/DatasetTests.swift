// Tests of the image-dataset readers: IDX, the MNIST CSV and CIFAR-10 binary on small files
// written here (good and every malformed case), the split, and the real data when fetched.

import Foundation
import Testing
@testable import SRFormats

/// Runs `body` with a fresh directory under the system temp dir, removed afterwards.
private func withScratchDirectory<R>(_ body: (String) throws -> R) throws -> R {
    let dir = FileManager.default.temporaryDirectory
        .appendingPathComponent("dataset-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    return try body(dir.path)
}

private func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

private func bigEndian(_ values: [UInt32]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.bigEndian) { Array($0) } }
}

/// An IDX images file of `count` images, rows×columns, pixel k of the file = k mod 251.
private func idxImages(count: Int, rows: Int, columns: Int) -> [UInt8] {
    bigEndian([0x803, UInt32(count), UInt32(rows), UInt32(columns)])
        + (0..<count * rows * columns).map { UInt8($0 % 251) }
}

private func idxLabels(_ labels: [UInt8]) -> [UInt8] {
    bigEndian([0x801, UInt32(labels.count)]) + labels
}

/// A malformed IDX pair and the error code reading it must produce.
struct MalformedIDX: Sendable, CustomTestStringConvertible {
    let name: String
    let images: [UInt8]
    let labels: [UInt8]
    let code: DatasetError.Code
    var testDescription: String { name }
}

/// A malformed binary file (CIFAR-10) and the error code reading it must produce.
struct MalformedBytes: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let code: DatasetError.Code
    var testDescription: String { name }
}

/// A malformed MNIST CSV body and the error code reading it must produce.
struct MalformedCSV: Sendable, CustomTestStringConvertible {
    let name: String
    let text: String
    let code: DatasetError.Code
    var testDescription: String { name }
}

private func csvRow(pixel: Int = 0, label: Int = 0, fields: Int = 784) -> String {
    (Array(repeating: String(pixel), count: fields) + [String(label)]).joined(separator: ",")
}

@Suite struct DatasetTests {
    // MARK: IDX

    @Test func idxPairParsesToTheDeclaredShapeAndScaledPixels() throws {
        try withScratchDirectory { dir in
            try write(idxImages(count: 3, rows: 4, columns: 5), to: dir + "/t10k-images-idx3-ubyte")
            try write(idxLabels([7, 0, 9]), to: dir + "/t10k-labels-idx1-ubyte")
            let (images, labels) = try IDX.readLabelledImages(
                imagesPath: dir + "/t10k-images-idx3-ubyte", labelsPath: dir + "/t10k-labels-idx1-ubyte")
            #expect(images.count == 3 && images.rows == 4 && images.columns == 5)
            #expect(images.pixels == (0..<60).map { UInt8($0) })
            #expect(labels == [7, 0, 9])

            let set = try ImageDataset.fashionMNIST(directory: dir, split: .test)
            #expect(set.count == 3 && set.channels == 1 && set.height == 4 && set.width == 5)
            #expect(set.image(1).first == Float(20) / 255)
            #expect(Array(set.image(2)) == (40..<60).map { Float($0) / 255 })
        }
    }

    static let malformedIDX: [MalformedIDX] = {
        let images = idxImages(count: 2, rows: 3, columns: 3)
        let labels = idxLabels([1, 2])
        return [
            MalformedIDX(name: "labels file as images", images: labels, labels: labels, code: .badMagic),
            MalformedIDX(name: "images file as labels", images: images, labels: images, code: .badMagic),
            MalformedIDX(name: "still gzip-compressed", images: [0x1F, 0x8B, 8, 0] + images,
                         labels: labels, code: .badMagic),
            MalformedIDX(name: "shorter than the magic", images: [0, 0, 8], labels: labels, code: .truncated),
            MalformedIDX(name: "ends inside the dimensions", images: Array(images.prefix(10)),
                         labels: labels, code: .truncated),
            MalformedIDX(name: "images data cut short", images: Array(images.dropLast()),
                         labels: labels, code: .truncated),
            MalformedIDX(name: "labels data cut short", images: images, labels: Array(labels.dropLast()),
                         code: .truncated),
            MalformedIDX(name: "dimensions overflow Int", images: bigEndian([0x803, .max, .max, .max]) + [1],
                         labels: labels, code: .truncated),
            MalformedIDX(name: "bytes after the data", images: images + [0], labels: labels, code: .trailingBytes),
            MalformedIDX(name: "three labels for two images", images: images, labels: idxLabels([1, 2, 3]),
                         code: .countMismatch),
        ]
    }()

    @Test(arguments: malformedIDX)
    func malformedIDXIsRejectedWithItsCode(_ sample: MalformedIDX) throws {
        try withScratchDirectory { dir in
            try write(sample.images, to: dir + "/images")
            try write(sample.labels, to: dir + "/labels")
            let error = #expect(throws: DatasetError.self) {
                try IDX.readLabelledImages(imagesPath: dir + "/images", labelsPath: dir + "/labels")
            }
            #expect(error?.code == sample.code, "\(error?.description ?? "")")
            #expect(error?.description.contains(dir) == true, "the message must name the file")
        }
    }

    @Test func missingFilesSayHowToFetchThem() throws {
        try withScratchDirectory { dir in
            let error = #expect(throws: DatasetError.self) {
                try ImageDataset.fashionMNIST(directory: dir, split: .train)
            }
            #expect(error?.code == .io)
            #expect(error?.description.contains("train-images-idx3-ubyte") == true)
            #expect(error?.description.contains("scripts/fetch-data.sh") == true)
        }
    }

    // MARK: MNIST CSV

    @Test func csvRowsParseWithCRLFAndAFinalNewline() throws {
        try withScratchDirectory { dir in
            var first = Array(repeating: "0", count: 784)
            first[0] = "255"; first[29] = "51"   // row 1, column 1
            let text = (first + ["3"]).joined(separator: ",") + "\r\n" + csvRow(pixel: 7, label: 9) + "\n"
            try write(Array(text.utf8), to: dir + "/mnist.csv")
            let set = try ImageDataset.mnist5k(csvPath: dir + "/mnist.csv")
            #expect(set.count == 2 && set.channels == 1 && set.height == 28 && set.width == 28)
            #expect(set.labels == [3, 9])
            #expect(set.image(0).first == 1 && set.image(0)[29] == Float(51) / 255)
            #expect(set.image(1).allSatisfy { $0 == Float(7) / 255 })
        }
    }

    static let malformedCSV: [MalformedCSV] = [
        MalformedCSV(name: "783 pixels", text: csvRow(fields: 783), code: .malformedRow),
        MalformedCSV(name: "785 pixels", text: csvRow(fields: 785), code: .malformedRow),
        MalformedCSV(name: "pixel 256", text: csvRow(pixel: 256), code: .malformedRow),
        MalformedCSV(name: "negative pixel", text: csvRow(pixel: -1), code: .malformedRow),
        MalformedCSV(name: "empty field", text: csvRow() + ",", code: .malformedRow),
        MalformedCSV(name: "decimal point", text: "0.5," + csvRow(fields: 783), code: .malformedRow),
        MalformedCSV(name: "blank line between rows", text: "\n" + csvRow(), code: .malformedRow),
        MalformedCSV(name: "label 10", text: csvRow(label: 10), code: .labelOutOfRange),
        MalformedCSV(name: "no rows", text: "", code: .truncated),
    ]

    @Test(arguments: malformedCSV)
    func malformedCSVIsRejectedWithItsCode(_ sample: MalformedCSV) throws {
        try withScratchDirectory { dir in
            // A good first row, so the error must name line 2 (line 1 for an empty file).
            let text = sample.text.isEmpty ? "" : csvRow(label: 4) + "\n" + sample.text + "\n"
            try write(Array(text.utf8), to: dir + "/bad.csv")
            let error = #expect(throws: DatasetError.self) {
                try ImageDataset.mnist5k(csvPath: dir + "/bad.csv")
            }
            #expect(error?.code == sample.code, "\(error?.description ?? "")")
            let location = sample.text.isEmpty ? dir + "/bad.csv" : dir + "/bad.csv:2"
            #expect(error?.description.contains(location) == true, "\(error?.description ?? "")")
        }
    }

    // MARK: CIFAR-10 binary

    @Test func cifarRecordsBecomeRGBPlanes() throws {
        try withScratchDirectory { dir in
            // Record r: red plane all 10·r+1, green 10·r+2, blue ramps 0...255 over the 1024 pixels.
            let blue: [UInt8] = (0..<1024).map { UInt8($0 / 4) }
            var bytes: [UInt8] = []
            for (r, label) in [(0, UInt8(6)), (1, 9)] {
                bytes.append(label)
                bytes += [UInt8](repeating: UInt8(10 * r + 1), count: 1024)
                bytes += [UInt8](repeating: UInt8(10 * r + 2), count: 1024)
                bytes += blue
            }
            try write(bytes, to: dir + "/batch.bin")
            let set = try ImageDataset.cifar10Binary(path: dir + "/batch.bin")
            #expect(set.count == 2 && set.channels == 3 && set.height == 32 && set.width == 32)
            #expect(set.labels == [6, 9])
            let second = Array(set.image(1))
            #expect(second[0..<1024].allSatisfy { $0 == Float(11) / 255 })
            #expect(second[1024..<2048].allSatisfy { $0 == Float(12) / 255 })
            #expect(second[2048] == 0 && second[3071] == 1 && second[2048 + 33 * 4] == Float(33) / 255)
        }
    }

    static let malformedCIFAR: [MalformedBytes] = [
        MalformedBytes(name: "empty file", bytes: [], code: .truncated),
        MalformedBytes(name: "record cut short", bytes: [UInt8](repeating: 1, count: 3072), code: .truncated),
        MalformedBytes(name: "extra byte", bytes: [UInt8](repeating: 1, count: 3074), code: .truncated),
        MalformedBytes(name: "label 10", bytes: [10] + [UInt8](repeating: 0, count: 3072), code: .labelOutOfRange),
    ]

    @Test(arguments: malformedCIFAR)
    func malformedCIFARIsRejectedWithItsCode(_ sample: MalformedBytes) throws {
        try withScratchDirectory { dir in
            try write(sample.bytes, to: dir + "/batch.bin")
            let error = #expect(throws: DatasetError.self) {
                try ImageDataset.cifar10Binary(path: dir + "/batch.bin")
            }
            #expect(error?.code == sample.code, "\(error?.description ?? "")")
            #expect(error?.description.contains(dir + "/batch.bin") == true)
        }
    }

    // MARK: Subsets and the split

    static let tiny = ImageDataset(images: (0..<40).map { Float($0) }, labels: (0..<10).map { UInt8($0) },
                                   channels: 1, height: 2, width: 2)

    @Test func subsetKeepsImagesWithTheirLabels() {
        let s = Self.tiny.subset([7, 2, 7])
        #expect(s.labels == [7, 2, 7] && s.count == 3)
        #expect(Array(s.image(0)) == [28, 29, 30, 31] && Array(s.image(1)) == [8, 9, 10, 11])
    }

    @Test(arguments: [0, 3, 10])
    func shuffledSplitPartitionsDeterministically(holdOut: Int) {
        let (train, test) = Self.tiny.shuffledSplit(holdOut: holdOut, seed: 42)
        #expect(test.count == holdOut && train.count == 10 - holdOut)
        #expect((train.labels + test.labels).sorted() == Self.tiny.labels)
        for i in 0..<train.count {   // each image still carries its own label (pixel 4·label)
            #expect(train.image(i).first == Float(train.labels[i]) * 4)
        }
        let again = Self.tiny.shuffledSplit(holdOut: holdOut, seed: 42)
        #expect(again.train == train && again.test == test)
    }

    @Test func permutationIsFixedBySeedAndVariesWithIt() {
        let a = ImageDataset.permutation(count: 1000, seed: 7)
        #expect(a.sorted() == Array(0..<1000))
        #expect(a == ImageDataset.permutation(count: 1000, seed: 7))
        #expect(a != ImageDataset.permutation(count: 1000, seed: 8))
        #expect(a != Array(0..<1000))
        // Pinned so that a change of algorithm, which would change every experiment's split, shows.
        #expect(ImageDataset.permutation(count: 8, seed: 1) == Self.pinnedPermutation)
    }

    /// Also computed by an independent Python SplitMix64 + Lemire draw + Fisher–Yates.
    static let pinnedPermutation = [0, 3, 7, 1, 2, 6, 5, 4]
}

/// Where scripts/fetch-data.sh puts the real data: ./data at the repository root.
enum FetchedImageData {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("data").path
    static let present = FileManager.default.fileExists(atPath: directory)
}

/// The real data; skipped (with the reason shown) until it is fetched.
@Suite(.enabled(if: FetchedImageData.present, "no ./data: run scripts/fetch-data.sh to fetch the real image data"))
struct RealDatasetTests {
    static let data = FetchedImageData.directory

    private func perClass(_ labels: [UInt8]) -> [Int] {
        labels.reduce(into: Array(repeating: 0, count: 10)) { $0[Int($1)] += 1 }
    }

    @Test func fashionMNISTTestSetHas1000ImagesPerClass() throws {
        let set = try ImageDataset.fashionMNIST(directory: Self.data + "/fashion-mnist", split: .test)
        #expect(set.count == 10_000 && set.channels == 1 && set.height == 28 && set.width == 28)
        #expect(perClass(set.labels) == Array(repeating: 1000, count: 10))
        let mean = set.images.reduce(0, +) / Float(set.images.count)
        #expect(mean > 0.2 && mean < 0.5, "mean pixel \(mean)")
    }

    @Test func fashionMNISTTrainingSetHas60000Images() throws {
        let set = try ImageDataset.fashionMNIST(directory: Self.data + "/fashion-mnist", split: .train)
        #expect(set.count == 60_000 && set.height == 28 && set.width == 28)
        #expect(perClass(set.labels) == Array(repeating: 6000, count: 10))
    }

    @Test func mnist5kHas500OfEachDigitSortedByLabel() throws {
        let set = try ImageDataset.mnist5k(csvPath: Self.data + "/mnist-5k/mnist_5k.csv")
        #expect(set.count == 5000 && set.height == 28 && set.width == 28)
        #expect(perClass(set.labels) == Array(repeating: 500, count: 10))
        #expect(set.labels == set.labels.sorted())
    }

    @Test func cifarSamplesHaveTheFirst20TestLabels() throws {
        let set = try ImageDataset.cifar10Binary(path: Self.data + "/cifar10-foolbox/test_batch_20.bin")
        #expect(set.count == 20 && set.channels == 3 && set.height == 32 && set.width == 32)
        #expect(set.labels == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6])
        let mean = set.images.reduce(0, +) / Float(set.images.count)
        #expect(mean > 0.2 && mean < 0.8, "mean pixel \(mean)")
        for i in 0..<set.count {   // real photographs: no blank or constant image
            let image = set.image(i)
            #expect(image.max()! - image.min()! > 0.3, "image \(i) has almost no contrast")
        }
    }
}
