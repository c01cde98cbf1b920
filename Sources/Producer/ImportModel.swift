// `srproduce model import`: an ONNX classifier (e.g. exported from PyTorch) into the project's
// model directory, checked once for exact refinement, ready for `model calibrate` and `infer`.
import ArgumentParser
import Foundation
import SRCore
import SRNeural
import SRONNX

struct ImportModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Convert an ONNX classifier into a model directory (model.json + model.safetensors).",
        discussion: """
            Reads a self-contained ONNX file with float32 weights whose graph is one chain of \
            nodes (like nn.Sequential): Gemm, MatMul (+ Add of a bias), Conv (3×3, stride 1, \
            padding 1, group 1), BatchNormalization (folded into the Conv or Gemm before it), \
            Relu, MaxPool (2×2, stride 2), Flatten or Reshape to [N, features], Identity and \
            Dropout (skipped), and a final Softmax or Sigmoid. Any other operator, a branch or \
            skip connection, external data or non-float32 weights are refused with the node's \
            name and what to do. Then it checks that the network can be refined exactly with \
            these resolutions and bits (inputs up to --input-max) and writes DIR. An ONNX file \
            carries no data to calibrate early exit on; next run, on labelled images the model \
            was not trained on: srproduce model calibrate --model DIR --images FILE --labels FILE. \
            Example: srproduce model import --onnx vgg.onnx --out models/vgg --classes fashion-mnist
            """)

    @Option(help: ArgumentHelp("The ONNX file (export with torch.onnx.export(model.eval(), x, FILE, opset_version=17)).", valueName: "file"))
    var onnx: String

    @Option(help: ArgumentHelp("Output model directory; created if missing.", valueName: "dir"))
    var out: String

    @Option(help: "Resolutions R written into the manifest (upgrades at inference).")
    var resolutions: Int = 6

    @Option(name: .customLong("bits-per-upgrade"), help: "Magnitude bits each upgrade adds to every tensor.")
    var bitsPerUpgrade: Int = 2

    // Unconditional: the typical value is negative (-12), which must not be taken for a flag.
    @Option(name: .customLong("activation-grid"), parsing: .unconditional, help: ArgumentHelp(
        "Round pre-activations to multiples of 2^H (the manifest's activationGrid): deep networks need it to stay exact within Int128.",
        valueName: "H"))
    var activationGrid: Int?

    @Option(help: "Classification head: auto (the graph's final Softmax/Sigmoid, else softmax over two or more outputs), softmax, sigmoid or none.")
    var head: HeadChoice = .auto

    enum HeadChoice: String, ExpressibleByArgument, CaseIterable {
        case auto, softmax, sigmoid, none
    }

    @Option(help: ArgumentHelp("Class names, comma-separated, or a data set's: fashion-mnist, mnist-5k.", valueName: "names"))
    var classes: String?

    @Option(name: .customLong("input-max"), help: "Largest input magnitude the model will see (1 for images scaled to [0, 1]): the exactness check fits the input partition to it.")
    var inputMax: Double = 1

    @Flag(help: "Replace a model already in --out.")
    var force = false

    func validate() throws {
        guard (1...ModelManifest.maxResolutions).contains(resolutions), (1...16).contains(bitsPerUpgrade) else {
            throw ValidationError("--resolutions must be in 1...\(ModelManifest.maxResolutions) and --bits-per-upgrade in 1...16")
        }
        guard inputMax > 0, inputMax.isFinite else { throw ValidationError("--input-max must be positive") }
        if let classes, classNames(classes).contains(where: \.isEmpty) {
            throw ValidationError("--classes '\(classes)' has an empty name; give names separated by commas, or fashion-mnist or mnist-5k")
        }
    }

    func classNames(_ text: String) -> [String] {
        if let dataset = DatasetChoice(rawValue: text) { return dataset.classes }
        return text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    }

    func run() throws {
        let manifestPath = URL(fileURLWithPath: out).appendingPathComponent("model.json").path
        if FileManager.default.fileExists(atPath: manifestPath) && !force {
            throw RunFailure("\(out) already holds a model (model.json); choose another --out or pass --force to replace it")
        }
        let headOption: ONNXImportOptions.Head = switch head {
        case .auto: .auto
        case .softmax: .softmax
        case .sigmoid: .sigmoid
        case .none: .none
        }
        let options = ONNXImportOptions(resolutions: resolutions, bitsPerUpgrade: bitsPerUpgrade, head: headOption,
                                        classes: classes.map(classNames))
        let result = try ONNXImporter.importModel(contentsOf: onnx, options: options)
        var model = result.model
        model.manifest.activationGrid = activationGrid
        do {
            let partition = try PartitionVector.fitted(maxMagnitude: inputMax, chunks: resolutions, bits: bitsPerUpgrade)
            _ = try QuantizedNetwork(manifest: model.manifest, tensors: model.tensors, inputPartition: partition)
        } catch {
            throw RunFailure("""
                \(onnx) imports, but cannot be refined exactly with \(resolutions) resolutions of \
                \(bitsPerUpgrade) bits: \(error). Try --activation-grid (e.g. -12: pre-activations \
                rounded to multiples of 2^-12) or fewer --resolutions / --bits-per-upgrade
                """)
        }
        try model.save(to: out)
        print("imported \(onnx) (opset \(result.opset), from \(result.producer)): input \(model.manifest.input), "
              + "\(model.manifest.layers.count) layers")
        for line in result.summary { print("  " + line) }
        print("saved to \(out); next, calibrate early exit on labelled held-out images:")
        print("  srproduce model calibrate --model \(out) --images FILE --labels FILE")
    }
}
