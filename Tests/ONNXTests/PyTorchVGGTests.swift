// The real model the importer exists for: Tests/Models/fashion-mnist-vgg/model.onnx, exported by
// PyTorch (scripts/train-vgg.sh), against ONNX Runtime's own outputs committed beside it
// (scripts/check_onnx.py): logits of test images 0…99 and the label of every test image.
import Foundation
import SRCore
import SRFormats
import SRNeural
@testable import SRONNX
import SRTraining
import Testing

enum PyTorchVGG {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Models/fashion-mnist-vgg")
    /// Fashion-MNIST's class names, in label order (from the data set's documentation).
    static let classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    static func path(_ file: String) -> String { directory.appendingPathComponent(file).path }
    static let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/fashion-mnist").path

    /// The import Tests/Models/README.md records for the committed model directory.
    static func imported() throws -> Model {
        var model = try ONNXImporter.importModel(contentsOf: path("model.onnx"),
                                                 options: ONNXImportOptions(classes: PyTorchVGG.classes)).model
        model.manifest.activationGrid = -12   // --activation-grid -12
        return model
    }
}

@Suite struct PyTorchVGGTests {
    /// Float forward of the imported network on test images 0…99 against ONNX Runtime's logits.
    @Test func importedForwardAgreesWithONNXRuntime() throws {
        let model = try PyTorchVGG.imported()
        let input = try Npy.read(contentsOf: PyTorchVGG.path("first100-input.npy"))
        let expected = try Npy.read(contentsOf: PyTorchVGG.path("first100-logits.npy"))
        guard case .float32(let x) = input.data, case .float32(let want) = expected.data else {
            Issue.record("the fixtures are not float32"); return
        }
        #expect(input.shape == [100, 1, 28, 28] && expected.shape == [100, 10])
        let got = try model.logits(for: Tensor(shape: [100, 784], values: x)).values
        let worst = zip(got, want).map { abs($0 - $1) }.max()!
        let scale = want.map(abs).max()!
        // Folding BatchNorm reassociates float32 arithmetic: agreement to float32 rounding of
        // sums of a few hundred terms, not bit for bit. Measured: 6.7e-6 on logits up to 19.1.
        #expect(worst <= 1e-4 * scale, "max |Swift − ONNX Runtime| = \(worst), logits up to \(scale)")
        let label = { (z: [Float], i: Int) in (0..<10).max { z[i * 10 + $0] < z[i * 10 + $1] }! }
        #expect((0..<100).allSatisfy { label(got, $0) == label(want, $0) })
    }

    /// The committed model directory is what `model import` makes of the committed ONNX file
    /// (calibration added only exit rules and the input partition).
    @Test func committedDirectoryIsTheImport() throws {
        let committed = try Model.load(from: PyTorchVGG.directory.path)
        let fresh = try PyTorchVGG.imported()
        #expect(committed.tensors == fresh.tensors)
        #expect(committed.manifest.layers == fresh.manifest.layers)
        #expect(committed.manifest.activationGrid == fresh.manifest.activationGrid)
        #expect(committed.manifest.classes == PyTorchVGG.classes)
        #expect(!(committed.manifest.exitRules ?? []).isEmpty, "not calibrated: see Tests/Models/README.md")
    }

    /// Labels of all 10 000 test images against ONNX Runtime's (argmax of its float logits).
    @Test(.enabled(if: FileManager.default.fileExists(atPath: PyTorchVGG.data), "no ./data: run scripts/fetch-data.sh"))
    func labelsMatchONNXRuntimeOnTheTestSet() throws {
        let model = try PyTorchVGG.imported()
        let test = try ImageDataset.fashionMNIST(directory: PyTorchVGG.data, split: .test)
        let reference = try Npy.read(contentsOf: PyTorchVGG.path("t10k-labels-onnxruntime.npy"))
        guard case .int32(let want) = reference.data else { Issue.record("labels are not int32"); return }
        let got = try model.predictions(for: Tensor(shape: [test.count, 784], values: test.images))
        let same = zip(got, want).filter { $0 == Int($1) }.count
        #expect(test.count == 10_000 && want.count == 10_000)
        #expect(Double(same) >= 0.999 * 10_000, "labels equal to ONNX Runtime's on \(same) of 10 000 images")
    }
}
