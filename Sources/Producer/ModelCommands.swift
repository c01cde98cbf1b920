// `srproduce model …`: train the project's networks on the real data sets in Swift, and
// evaluate them — reproducibly (seeded), so committed weights come with the command that made them.
import ArgumentParser
import Foundation
import SRFormats
import SRKernels
import SRNeural
import SRTraining

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Train, import, evaluate and calibrate networks for successive-refinement inference.",
        subcommands: [TrainModel.self, EvaluateModel.self, CalibrateModel.self, ImportModel.self])
}

/// The data sets of ENVIRONMENT.md, fetched by scripts/fetch-data.sh into ./data.
enum DatasetChoice: String, ExpressibleByArgument, CaseIterable {
    case fashionMNIST = "fashion-mnist"
    case mnist5k = "mnist-5k"

    /// (train, test): Fashion-MNIST's own split; MNIST-5k shuffled (seed 5000) with 1 000 held out.
    func load(dataDirectory: String) throws -> (train: ImageDataset, test: ImageDataset) {
        switch self {
        case .fashionMNIST:
            let dir = dataDirectory + "/fashion-mnist"
            return (try ImageDataset.fashionMNIST(directory: dir, split: .train),
                    try ImageDataset.fashionMNIST(directory: dir, split: .test))
        case .mnist5k:
            let all = try ImageDataset.mnist5k(csvPath: dataDirectory + "/mnist-5k/mnist_5k.csv")
            return all.shuffledSplit(holdOut: 1000, seed: 5000)
        }
    }

    var classes: [String] {
        switch self {
        case .fashionMNIST: ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        case .mnist5k: (0...9).map(String.init)
        }
    }
}

struct TrainModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train an MLP or a small CNN on a real data set and save it as a model directory.",
        discussion: """
            Writes DIR/model.json (the manifest: layers, resolutions, bits per upgrade) and \
            DIR/model.safetensors, then prints the test accuracy. Seeded: the same command gives \
            the same weights (one BLAS thread). Needs the data of scripts/fetch-data.sh.
            """)

    @Option(help: "Data set: fashion-mnist or mnist-5k.")
    var dataset: DatasetChoice = .fashionMNIST

    @Option(help: "Architecture: mlp (784→256→128→10) or cnn (two conv blocks, dense head).")
    var arch: Architecture = .mlp

    enum Architecture: String, ExpressibleByArgument, CaseIterable { case mlp, cnn }

    @Option(help: "Training epochs.")
    var epochs: Int = 5

    @Option(name: .customLong("batch-size"), help: "Mini-batch size.")
    var batchSize: Int = 64

    @Option(name: .customLong("learning-rate"), help: "Adam learning rate.")
    var learningRate: Float = 0.001

    @Option(help: "Resolutions R written into the manifest (upgrades at inference).")
    var resolutions: Int = 6

    @Option(name: .customLong("bits-per-upgrade"), help: "Magnitude bits each upgrade adds to every tensor.")
    var bitsPerUpgrade: Int = 2

    @Option(help: "Seed for initialisation and shuffling.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Where the data sets are.", valueName: "dir"))
    var data: String = "data"

    @Option(help: ArgumentHelp("Output model directory.", valueName: "dir"))
    var out: String

    func validate() throws {
        guard (1...1000).contains(epochs) else { throw ValidationError("--epochs must be in 1...1000") }
        guard (1...60000).contains(batchSize) else { throw ValidationError("--batch-size must be in 1...60000") }
        guard learningRate > 0, learningRate.isFinite else { throw ValidationError("--learning-rate must be positive") }
        guard (1...16).contains(resolutions), (1...16).contains(bitsPerUpgrade) else {
            throw ValidationError("--resolutions and --bits-per-upgrade must be in 1...16")
        }
    }

    func run() throws {
        BLAS.setThreadCount(1)
        let (train, test) = try dataset.load(dataDirectory: data)
        var architecture = arch == .mlp
            ? ModelArchitectures.mlp(input: train.imageSize, resolutions: resolutions, bitsPerUpgrade: bitsPerUpgrade)
            : ModelArchitectures.smallCNN(input: [train.channels, train.height, train.width], resolutions: resolutions,
                                          bitsPerUpgrade: bitsPerUpgrade)
        architecture.manifest.classes = dataset.classes
        print("training \(arch.rawValue) on \(dataset.rawValue): \(train.count) images, \(epochs) epochs, seed \(seed)")
        let model = try Training.train(architecture, data: (train.images, train.labels, train.count), epochs: epochs,
                                       batchSize: batchSize, learningRate: learningRate, seed: seed,
                                       progress: { print("  \($0)") })
        let accuracy = try Training.evaluate(model, images: test.images, labels: test.labels)
        try model.save(to: out)
        print(String(format: "test accuracy %.4f on %d images; saved to ", accuracy, test.count) + out)
    }
}

struct EvaluateModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Print a saved model's accuracy on a data set's test split (float32, one shot).")

    @Option(help: ArgumentHelp("Model directory or .safetensors file.", valueName: "path"))
    var model: String

    @Option(help: "Data set: fashion-mnist or mnist-5k.")
    var dataset: DatasetChoice = .fashionMNIST

    @Option(help: ArgumentHelp("Where the data sets are.", valueName: "dir"))
    var data: String = "data"

    func run() throws {
        BLAS.setThreadCount(1)
        let m = try Model.load(from: model)
        let (_, test) = try dataset.load(dataDirectory: data)
        let accuracy = try Training.evaluate(m, images: test.images, labels: test.labels)
        print(String(format: "test accuracy %.4f on %d images", accuracy, test.count))
    }
}
