// The accuracy floors, on the real test sets, for the committed weights (Tests/Models,
// with the commands that trained them): Fashion-MNIST MLP ≥ 88 %, CNN ≥ 90 %, the VGG imported
// from PyTorch's ONNX export ≥ 93 %, MNIST-5k MLP ≥ 94 %.
import Foundation
import Testing
@testable import SRFormats
@testable import SRNeural
@testable import SRStore
@testable import SRTraining

enum RealData {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var directory: String { root.appendingPathComponent("data").path }
    static var available: Bool { FileManager.default.fileExists(atPath: directory + "/fashion-mnist") }
    static func model(_ name: String) throws -> Model {
        try Model.load(from: root.appendingPathComponent("Tests/Models/\(name)").path)
    }
}

@Suite(.enabled(if: RealData.available, "no ./data: run scripts/fetch-data.sh (scripts/test.sh does)"))
struct AccuracyFloorTests {
    @Test func fashionMNISTMLPReaches88Percent() throws {
        let test = try ImageDataset.fashionMNIST(directory: RealData.directory + "/fashion-mnist", split: .test)
        let accuracy = try Training.evaluate(RealData.model("fashion-mnist-mlp"), images: test.images, labels: test.labels)
        #expect(test.count == 10_000)
        #expect(accuracy >= 0.88, "accuracy \(accuracy)")
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: RealData.root.appendingPathComponent("Tests/Models/fashion-mnist-cnn").path)))
    func fashionMNISTCNNReaches90Percent() throws {
        let test = try ImageDataset.fashionMNIST(directory: RealData.directory + "/fashion-mnist", split: .test)
        let accuracy = try Training.evaluate(RealData.model("fashion-mnist-cnn"), images: test.images, labels: test.labels)
        #expect(accuracy >= 0.90, "accuracy \(accuracy)")
    }

    /// The model directory as `model import` wrote it from Tests/Models/fashion-mnist-vgg/model.onnx
    /// (BatchNorm folded, 12-bit weights at resolution R = 6); the float32 forward of its
    /// weights, as the other floors.
    @Test func fashionMNISTVGGReaches93Percent() throws {
        let test = try ImageDataset.fashionMNIST(directory: RealData.directory + "/fashion-mnist", split: .test)
        let accuracy = try Training.evaluate(RealData.model("fashion-mnist-vgg"), images: test.images, labels: test.labels)
        #expect(accuracy >= 0.93, "accuracy \(accuracy)")
    }

    @Test func mnist5kMLPReaches94Percent() throws {
        let all = try ImageDataset.mnist5k(csvPath: RealData.directory + "/mnist-5k/mnist_5k.csv")
        let (_, test) = all.shuffledSplit(holdOut: 1000, seed: 5000)
        let accuracy = try Training.evaluate(RealData.model("mnist-5k-mlp"), images: test.images, labels: test.labels)
        #expect(test.count == 1000)
        #expect(accuracy >= 0.94, "accuracy \(accuracy)")
    }
}

@Suite struct ModelStoreTests {
    @Test func registeredModelsLoadByNameAndDigestUnchanged() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sr-models-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = OperandStore(root: root)
        let model = try RealData.model("mnist-5k-mlp")
        let digest = try store.register(model: model, name: "digits")
        #expect(try store.resolveModel("digits") == digest)
        #expect(try store.loadModel(digest: digest) == model)
        #expect(try store.register(model: model, name: nil) == digest)   // content-addressed
        #expect(throws: StoreError.self) { try store.loadModel(digest: String(repeating: "0", count: 64)) }
    }
}
