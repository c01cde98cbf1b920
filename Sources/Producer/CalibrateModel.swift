// `srproduce model calibrate`: choose early-exit thresholds for a model on labelled held-out
// images and store them (with the input partition they assume) in the model's manifest, so
// that `srproduce infer` applies calibrated rules by default.
import ArgumentParser
import Foundation
import SRCore
import SRFormats
import SRKernels
import SRNeural

struct CalibrateModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Calibrate early-exit rules on labelled images and save them in the model's manifest.",
        discussion: """
            Evaluates the images exactly at every resolution, then picks per-resolution \
            thresholds for each rule so that the adaptive run costs least while it loses at most \
            --max-loss percentage points against resolution R on these images (with a --safety \
            margin against thresholds that fit by luck). Each resolution is weighed by its cost \
            (per layer, multiply-adds times one plus the weights' int8 digit planes; printed \
            first); where too few images would exit to pay for evaluating every image there, \
            the threshold becomes inf and `infer` skips that resolution (entropy: -inf). Each \
            rule's line gives its accuracy, the image-resolutions it skips, and its cost under \
            that model as a share of evaluating every resolution and as a multiple of \
            evaluating R alone. Rules: see `srproduce infer --help`. Writes the rules to the manifest (`exitRules`, the \
            first listed is `srproduce infer`'s default) and fixes the input partition it \
            calibrated with (`partitions.input`). Use images the model was not trained on — and \
            not the ones you report on. Example: srproduce model calibrate --model DIR \
            --images data/fashion-mnist/t10k-images-idx3-ubyte --labels \
            data/fashion-mnist/t10k-labels-idx1-ubyte --count 5000
            """)

    @Option(help: ArgumentHelp("Model directory (model.json + model.safetensors) or .safetensors file.", valueName: "path"))
    var model: String

    @OptionGroup var imageOptions: ImageOptions

    @Option(help: "Rules to calibrate, comma-separated, the default first: margin, entropy, stability (gray-zone for one-logit networks).")
    var rules: String = "margin,stability,entropy"

    @Option(name: .customLong("max-loss"), help: "Accuracy a rule may lose against resolution R on these images, in percentage points.")
    var maxLoss = 0.5

    @Option(help: "Safety factor z: net loss + z·√(flipped samples) must fit --max-loss (0: the plain constraint).")
    var safety = 2.0

    @Option(help: ArgumentHelp("Where to write the calibrated model (default: over --model).", valueName: "path"))
    var out: String?

    func validate() throws {
        guard maxLoss >= 0, maxLoss < 100 else { throw ValidationError("--max-loss must be in [0, 100) percentage points") }
        guard safety >= 0, safety.isFinite else { throw ValidationError("--safety must be ≥ 0") }
    }

    func run() throws {
        BLAS.setThreadCount(1)
        var net = try Model.load(from: model)
        let file = try imageOptions.read()
        guard let labels = file.labels else {
            throw ValidationError("\(imageOptions.images) has no labels; give --labels FILE")
        }
        let families = try rules.split(separator: ",").map { name in
            guard let f = ExitRule.Family(rawValue: name == "gray-zone" ? "grayZone" : String(name)) else {
                throw ValidationError("unknown rule '\(name)'; use margin, entropy, stability or gray-zone")
            }
            return f
        }
        let manifest = net.manifest
        let partition = try QuantizedNetwork.inputPartition(manifest: manifest, maxMagnitude: file.samples.maxMagnitude)
        let network = try QuantizedNetwork(manifest: manifest, tensors: net.tensors, inputPartition: partition)
        let inputs = try network.quantize(rows: file.samples, 0..<file.samples.rows)
        print("evaluating \(inputs.count) images at resolutions 1…\(manifest.resolutions)")
        let logits = try AdaptiveRunner.allResolutions(network, inputs: inputs)
        // What each resolution costs relative to the others (weight digit planes × multiply-adds):
        // calibration skips a resolution where too few images exit to pay for it.
        let costs = network.resolutionCosts()
        let last = costs.last ?? 1
        print("cost per image at r = 1…\(costs.count), relative to R: " + costs.map { String(format: "%.2f", $0 / last) }.joined(separator: " "))
        var texts: [String] = []
        for family in families {
            let c = try ExitCalibration.calibrate(family, logits: logits, labels: labels, maxLoss: maxLoss / 100, safety: safety,
                                                  costs: costs)
            texts.append(c.rule.text)
            print("\(family.rawValue): " + String(format: "accuracy at R %.4f, adaptive %.4f (loss %.2f pp), skipped %.1f %%, cost %.1f %% of every resolution (%.2f × R alone) — ",
                         c.referenceAccuracy, c.adaptiveAccuracy, 100 * c.accuracyLoss, 100 * c.skippedShare,
                         100 * c.costShare, c.costShare * costs.reduce(0, +) / last)
                  + c.rule.text)
        }
        net.manifest.exitRules = texts
        net.manifest.partitions["input"] = partition.exponents
        let destination = out ?? model
        if destination.hasSuffix(".safetensors") { try net.save(toFile: destination) } else { try net.save(to: destination) }
        print("saved to \(destination) (input partition \(partition.exponents))")
    }
}
