// srbench exact-inference: wall time of exact inference over the Fashion-MNIST test images per
// model, resolution and product policy (the legacy float64/Int64/Int128 paths against the int8
// digit GEMM), the logits checked identical across policies, and where the time goes.
import ArgumentParser
import Foundation
import SRCore
import SRFormats
import SRKernels
import SRNeural

struct ExactInference: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exact-inference",
        abstract: "Time exact direct evaluation of the test images under each product policy.",
        discussion: """
            For every --model and resolution, evaluates the first --limit test images directly \
            (DirectEvaluator, slices of --slice-size, the resolution's operands assembled once \
            and not timed, inputs split once and not timed) under each --policy, --repeats times, \
            and prints the median, min and max wall time and whether the logits equal those of \
            the first policy bit for bit. --profile adds one more run per row with every linear \
            layer's time split into phases: weight digits, activation split (digits, or the \
            conversion inside BLAS products), im2col patches, the product with its recombination, \
            the output reorder, and what follows the product (g: the bias, ReLU and grid \
            rounding where the product did not do them as its epilogue, pooling, flatten). \
            Example: \
            OPENBLAS_NUM_THREADS=1 .build/release/srbench exact-inference --model Tests/Models/fashion-mnist-mlp --profile
            """)

    @Option(help: "A model directory (model.json + model.safetensors); repeat for several.")
    var model: [String] = []

    @Option(help: "Directory with the Fashion-MNIST IDX files.")
    var data = "data/fashion-mnist"

    @Option(help: "A resolution to evaluate; repeat for several (default: 1 and the model's R).")
    var resolution: [Int] = []

    @Option(help: "A product policy; repeat for several. The first is the reference the others are checked against.")
    var policy: [PolicyName] = [.legacy, .automatic]

    @Option(help: "Timed runs per figure; the median is reported.")
    var repeats = 3

    @Option(help: "Samples evaluated together.")
    var sliceSize = 1000

    @Option(help: "Test images evaluated (the first ones).")
    var limit = 10_000

    @Option(help: "OpenBLAS threads.")
    var threads = 1

    @Flag(help: "Also print the per-layer, per-phase breakdown (one extra run per row).")
    var profile = false

    enum PolicyName: String, ExpressibleByArgument, CaseIterable {
        case legacy, automatic, digits, portable, avx2, vnni

        var policy: ExactProductPolicy {
            switch self {
            case .legacy: .legacy
            case .automatic: .automatic
            case .digits: .digits(level: nil)
            case .portable: .digits(level: 0)
            case .avx2: .digits(level: 1)
            case .vnni: .digits(level: 3)
            }
        }
    }

    func validate() throws {
        guard !model.isEmpty else { throw ValidationError("give at least one --model, e.g. --model Tests/Models/fashion-mnist-mlp") }
        guard repeats >= 1, sliceSize >= 1, limit >= 1, threads >= 1 else {
            throw ValidationError("--repeats, --slice-size, --limit and --threads must be positive")
        }
        guard !policy.isEmpty else { throw ValidationError("give at least one --policy") }
    }

    func run() throws {
        BLAS.setThreadCount(threads)
        let test = try ImageDataset.fashionMNIST(directory: data, split: .test)
        let count = min(limit, test.count)
        print("exact inference of \(count) Fashion-MNIST test images; OpenBLAS threads \(BLAS.threadCount); "
              + "int8 \(Int8Kernel.instructionSet), digit GEMM level \(DigitProduct.level(nil)) "
              + "(\(DigitProduct.digitBits(level: nil))-bit activation digits); median of \(repeats), seconds\n")
        print("| model | r | policy | median | min | max | logits |")
        print("|---|---|---|---|---|---|---|")
        var profiles: [(String, [ExactLayerProfile])] = []
        for path in model {
            let net = try Model.load(from: path)
            let maxPixel = Double(test.images.prefix(count * 784).max() ?? 1)
            var network = try QuantizedNetwork(
                manifest: net.manifest, tensors: net.tensors,
                inputPartition: QuantizedNetwork.inputPartition(manifest: net.manifest, maxMagnitude: maxPixel))
            let shape = net.manifest.input
            let inputs = try (0..<count).map { i in
                try network.quantize(input: Tensor(shape: shape, values: Array(test.image(i))), name: "image \(i)")
            }
            let name = URL(fileURLWithPath: path).lastPathComponent
            for r in resolution.isEmpty ? [1, network.resolutions] : resolution {
                let operands = network.operands(atResolution: r)
                var reference: [ExactTensor]? = nil
                for p in policy {
                    network.productPolicy = p.policy
                    let evaluator = DirectEvaluator(network: network)
                    var logits: [ExactTensor] = []
                    var times: [Double] = []
                    for _ in 0..<repeats {
                        var out: [ExactTensor] = []
                        out.reserveCapacity(count)
                        let t = try ContinuousClock().measure {
                            for start in stride(from: 0, to: count, by: sliceSize) {
                                let slice = Array(inputs[start..<min(start + sliceSize, count)])
                                out += try evaluator.evaluate(slice, resolution: r, operands: operands)
                            }
                        }
                        times.append(t.seconds)
                        logits = out
                    }
                    times.sort()
                    let same: String
                    if let reference { same = reference == logits ? "identical" : "DIFFER" } else { same = "reference" }
                    if reference == nil { reference = logits }
                    print("| \(name) | \(r) | \(p.rawValue) | \(fmt(times[times.count / 2])) | \(fmt(times[0])) | \(fmt(times[times.count - 1])) | \(same) |")
                    fflush(nil)   // rows appear as measured, also when stdout is a file (runs take minutes)
                    if profile {
                        var layers: [ExactLayerProfile] = []
                        for start in stride(from: 0, to: count, by: sliceSize) {
                            _ = evaluator.profile(Array(inputs[start..<min(start + sliceSize, count)]),
                                                  operands: operands, into: &layers)
                        }
                        profiles.append(("\(name), r = \(r), \(p.rawValue)", layers))
                    }
                }
            }
        }
        for (title, layers) in profiles {
            print("\n\(title) — seconds per phase\n")
            print("| layer | paths | weights | split | im2col | product | reorder | g after | total |")
            print("|---|---|---|---|---|---|---|---|---|")
            for l in layers {
                print("| \(l.name) | \(l.paths.joined(separator: ", ")) | \(fmt(l.weights.seconds)) | \(fmt(l.split.seconds)) | "
                      + "\(fmt(l.patches.seconds)) | \(fmt(l.product.seconds)) | \(fmt(l.reorder.seconds)) | "
                      + "\(fmt(l.activations.seconds)) | \(fmt(l.total.seconds)) |")
            }
            let sum = layers.reduce(Duration.zero) { $0 + $1.total }
            print("| all | | | | | | | | \(fmt(sum.seconds)) |")
        }
    }

    /// Seconds with three decimals, without Foundation's String(format:).
    func fmt(_ s: Double) -> String {
        let ms = Int((s * 1000).rounded())
        let frac = String(ms % 1000)
        return "\(ms / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
    }
}
