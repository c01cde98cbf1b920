// srbench embedded-inference: the exact evaluator in this process on one thread — resolution 1
// for every image, the calibrated early exit, and full resolution — timed side by side, the
// embedded half of Benchmarks/neural-vs-onnxruntime.sh (its peer: ONNX Runtime's float pass).
import ArgumentParser
import Foundation
import SRCore
import SRFormats
import SRKernels
import SRNeural

struct EmbeddedInference: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embedded-inference",
        abstract: "Time exact inference of a model in this process: resolution 1, the calibrated early exit, and resolution R.",
        discussion: """
            Loads --model (model.json + model.safetensors) and the images (an IDX images file, \
            pixels scaled to [0, 1] as `srproduce infer` does), splits every image by the input \
            partition (the manifest's, else one fitted to the images) and assembles every \
            resolution's operands once — what a worker does when it loads a model; both are \
            timed once and reported apart. After an untimed warm-up (one slice at every resolution), --repeats times and interleaved so that drifts \
            in machine speed hit all three alike: every image directly at resolution 1; the \
            adaptive run under the exit rule (only the images still undecided are evaluated at \
            the next resolution, as the pool's aggregator asks for them); every image directly \
            at R. One BLAS thread, images in slices of --slice-size. Wall and process CPU times \
            per run, the median and the range, and the accuracy of each. Example: \
            swift run -c release srbench embedded-inference --model Tests/Models/fashion-mnist-vgg --count 1000
            """)

    @Option(help: ArgumentHelp("A model directory (model.json + model.safetensors) or .safetensors file.", valueName: "path"))
    var model = "Tests/Models/fashion-mnist-vgg"

    @Option(help: ArgumentHelp("The images: an IDX images file (pixels scaled to [0, 1]), a CIFAR-10 .bin batch, an MNIST .csv, or a .npy array.", valueName: "path"))
    var images = "data/fashion-mnist/t10k-images-idx3-ubyte"

    @Option(help: ArgumentHelp("The labels: an IDX labels file or a .npy vector (\"\" when the images carry them: .bin, .csv).", valueName: "path"))
    var labels = "data/fashion-mnist/t10k-labels-idx1-ubyte"

    @Option(help: "Index of the first image.")
    var first = 0

    @Option(help: "Number of images.")
    var count = 10_000

    @Option(name: .customLong("exit"), help: ArgumentHelp("Exit rule of the adaptive run, e.g. margin:0.5,0.3 (default: the model's first calibrated rule).", valueName: "rule"))
    var exitRule: String?

    @Option(help: "Timed runs of each mode; the table gives the median and the range.")
    var repeats = 3

    @Option(help: "Images evaluated together (bounds memory: exact activations are 16 bytes a value).")
    var sliceSize = 100

    @Flag(help: "Print one JSON object (every run's times) instead of the markdown table.")
    var json = false

    func validate() throws {
        guard count >= 1, first >= 0 else { throw ValidationError("--count must be ≥ 1 and --first ≥ 0") }
        guard repeats >= 1, sliceSize >= 1 else { throw ValidationError("--repeats and --slice-size must be positive") }
    }

    /// One mode's runs: wall and CPU time of each, and what the last run predicted.
    struct Mode {
        let name: String
        var wall: [Duration] = []
        var cpu: [Duration] = []
        var predictions: [Int] = []
        /// Images whose final answer came at resolution r = 1…R (the adaptive run only).
        var exitHistogram: [Int] = []
    }

    func run() throws {
        BLAS.setThreadCount(1)
        let net = try Model.load(from: model)
        let file = try ImageFile.read(images, labelsPath: labels.isEmpty ? nil : labels, first: first, count: count)
        guard let truth = file.labels else {
            throw ValidationError("\(images) has no labels; give --labels FILE")
        }
        let manifest = net.manifest
        let rule: ExitRule
        if let exitRule {
            rule = try ExitRule(parsing: exitRule)
        } else if let calibrated = manifest.exitRules?.first {
            rule = try ExitRule(parsing: calibrated)
        } else {
            throw ValidationError("\(model) has no calibrated exit rule; run `srproduce model calibrate --model \(model) --images … --labels …` on held-out images, or give --exit")
        }
        let clock = ContinuousClock()
        var network: QuantizedNetwork?
        var inputs: [QuantizedTensor] = []
        let quantizeTime = try clock.measure {
            let partition = try QuantizedNetwork.inputPartition(manifest: manifest, maxMagnitude: file.samples.maxMagnitude)
            let n = try QuantizedNetwork(manifest: manifest, tensors: net.tensors, inputPartition: partition)
            inputs = try n.quantize(rows: file.samples, 0..<file.samples.rows)
            network = n
        }
        guard let network else { return }
        let r = network.resolutions
        if let why = rule.mismatch(outputs: network.outputShape.reduce(1, *)) { throw ValidationError(why) }
        var operands: [ResolutionOperands] = []
        let operandTime = clock.measure { operands = (1...r).map { network.operands(atResolution: $0) } }
        let evaluator = DirectEvaluator(network: network)

        /// The logits of `samples` at resolution `level`, in slices, with that level's operands.
        func logits(_ samples: [Int], _ level: Int) throws -> [[Double]] {
            var out: [[Double]] = []
            out.reserveCapacity(samples.count)
            var start = 0
            while start < samples.count {
                let slice = samples[start..<min(start + sliceSize, samples.count)].map { inputs[$0] }
                out += try evaluator.evaluate(slice, resolution: level, operands: operands[level - 1]).map(\.values)
                start += slice.count
            }
            return out
        }
        let all = Array(inputs.indices)
        // Warm-up, untimed: one slice at every resolution (first-touch allocations, caches).
        for level in 1...r { _ = try logits(Array(all.prefix(sliceSize)), level) }
        var modes = [Mode(name: "resolution 1"), Mode(name: "exit \(rule.text)"), Mode(name: "resolution \(r)")]
        for k in 0..<repeats {
            log("run \(k + 1)/\(repeats): \(inputs.count) images at resolution 1, adaptively, at \(r)")
            for m in modes.indices {
                var predictions: [Int] = [], histogram: [Int] = []
                let start = ProcessCPU.now()
                let wall = try clock.measure {
                    switch m {
                    case 0: predictions = try logits(all, 1).map(ExitRule.predictedClass)
                    case 1:
                        let run = try AdaptiveRunner(rule: rule, resolutions: r).run(sampleCount: inputs.count) { samples, level in
                            try logits(samples, level)
                        }
                        predictions = run.predictions
                        histogram = (1...r).map { level in run.exitResolution.count { $0 == level } }
                    default: predictions = try logits(all, r).map(ExitRule.predictedClass)
                    }
                }
                modes[m].cpu.append(ProcessCPU.now() - start)
                modes[m].wall.append(wall)
                modes[m].predictions = predictions
                modes[m].exitHistogram = histogram
            }
        }
        let report = Report(model: model, images: inputs.count, first: first, resolutions: r,
                            bitsPerUpgrade: manifest.bitsPerUpgrade, rule: rule.text, sliceSize: sliceSize,
                            quantizeMs: quantizeTime.milliseconds, operandsMs: operandTime.milliseconds,
                            modes: modes.map { m in
                                Report.ModeFigures(name: m.name, wallMs: m.wall.map(\.milliseconds), cpuMs: m.cpu.map(\.milliseconds),
                                                   accuracy: Double(zip(m.predictions, truth).count { $0 == $1 }) / Double(truth.count),
                                                   exitHistogram: m.exitHistogram.isEmpty ? nil : m.exitHistogram)
                            })
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.markdown)
        }
    }

    /// Progress goes to standard error so that standard output is the report alone.
    func log(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// What one invocation measured; the JSON form is what the script reads.
    struct Report: Encodable {
        struct ModeFigures: Encodable {
            let name: String
            let wallMs: [Double]
            let cpuMs: [Double]
            let accuracy: Double
            let exitHistogram: [Int]?
        }

        let model: String
        let images: Int
        let first: Int
        let resolutions: Int
        let bitsPerUpgrade: Int
        let rule: String
        let sliceSize: Int
        let quantizeMs: Double
        let operandsMs: Double
        let modes: [ModeFigures]

        var markdown: String {
            let full = modes.last?.accuracy ?? 0
            var lines = [
                "\(model): \(images) images from \(first), R = \(resolutions), \(bitsPerUpgrade) bits per upgrade, exit \(rule); "
                    + "one thread, slices of \(sliceSize). Once before timing: images split \(Self.fmt(0, quantizeMs)) ms, "
                    + "operands of every resolution \(Self.fmt(0, operandsMs)) ms.",
                "",
                "| mode | median ms | min–max ms | CPU ms (median) | accuracy | lost vs R (pp) | answered at r = 1…R |",
                "|---|---|---|---|---|---|---|",
            ]
            for m in modes {
                let w = m.wallMs.sorted()
                lines.append("| \(m.name) | \(Self.fmt(0, Self.median(w))) | \(Self.fmt(0, w.first ?? 0))–\(Self.fmt(0, w.last ?? 0)) | "
                             + "\(Self.fmt(0, Self.median(m.cpuMs.sorted()))) | \(Self.fmt(4, m.accuracy)) | "
                             + "\(Self.fmt(2, 100 * (full - m.accuracy))) | "
                             + "\(m.exitHistogram.map { $0.map(String.init).joined(separator: " / ") } ?? "—") |")
            }
            return lines.joined(separator: "\n")
        }

        static func median(_ sorted: [Double]) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let mid = sorted.count / 2
            return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
        }

        static func fmt(_ digits: Int, _ v: Double) -> String { String(format: "%.\(digits)f", v) }
    }
}

/// CPU time of this process (every thread), next to wall time: on shared cores the steadier figure.
enum ProcessCPU {
    static func now() -> Duration {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return .seconds(Int64(t.tv_sec)) + .nanoseconds(Int64(t.tv_nsec))
    }
}
