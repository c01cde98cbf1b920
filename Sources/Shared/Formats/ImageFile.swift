// Images to classify, from any file format the project reads, as one sample per row.
import SRCore
import Foundation

/// Samples (one per row, C order within a sample) and their labels when the file has them.
public struct ImageFile: Sendable {
    public var samples: Matrix<Double>
    /// Class labels (nil when the format carries none and no labels file was given).
    public var labels: [Int]?

    public init(samples: Matrix<Double>, labels: [Int]?) {
        self.samples = samples
        self.labels = labels
    }

    /// Reads `path` by its form: an IDX images file (`*-idx3-ubyte`, pixels scaled to [0, 1] as in
    /// training), a CIFAR-10 binary batch (`*.bin`), an MNIST CSV (`*.csv`, label last) or a
    /// `.npy` array (N × size, used as is). `labelsPath`: an IDX labels file or a `.npy` vector.
    /// `first` and `count` select samples `first ..< first + count`.
    public static func read(_ path: String, labelsPath: String? = nil, first: Int = 0, count: Int? = nil) throws -> ImageFile {
        var file: ImageFile
        if path.hasSuffix(".npy") {
            file = ImageFile(samples: try Npy.readMatrix(contentsOf: path), labels: nil)
        } else if path.hasSuffix(".bin") {
            file = ImageFile(try ImageDataset.cifar10Binary(path: path))
        } else if path.hasSuffix(".csv") {
            file = ImageFile(try ImageDataset.mnist5k(csvPath: path))
        } else {
            let images = try IDX.readImages(path: path)
            let size = images.rows * images.columns
            file = ImageFile(samples: Matrix(rows: images.count, columns: size,
                                             elements: ImageDataset.scaled(images.pixels).map(Double.init)), labels: nil)
        }
        if let labelsPath {
            let labels: [Int]
            if labelsPath.hasSuffix(".npy") {
                let m = try Npy.readMatrix(contentsOf: labelsPath)
                guard m.columns == 1, m.elements.allSatisfy({ $0 == $0.rounded() && $0 >= 0 && $0 < 1e9 }) else {
                    throw DatasetError(.malformedRow, "\(labelsPath): labels must be a vector of non-negative integers")
                }
                labels = m.elements.map { Int($0) }
            } else {
                labels = try IDX.readLabels(path: labelsPath).map(Int.init)
            }
            guard labels.count == file.samples.rows else {
                throw DatasetError(.countMismatch, "\(path) holds \(file.samples.rows) images but \(labelsPath) holds \(labels.count) labels; the two files do not belong together")
            }
            file.labels = labels
        }
        let n = file.samples.rows
        let take = count ?? (n - first)
        guard first >= 0, first <= n, take >= 1, take <= n - first else {
            throw DatasetError(.countMismatch, "\(path) holds \(n) images; \(take) from index \(first) on are not all there")
        }
        let size = file.samples.columns
        return ImageFile(samples: Matrix(rows: take, columns: size,
                                         elements: Array(file.samples.elements[(first * size)..<((first + take) * size)])),
                         labels: file.labels.map { Array($0[first..<(first + take)]) })
    }

    init(_ dataset: ImageDataset) {
        self.init(samples: Matrix(rows: dataset.count, columns: dataset.imageSize, elements: dataset.images.map(Double.init)),
                  labels: dataset.labels.map(Int.init))
    }
}
