// Adaptive resolution (METHOD.md §6) done for real: at each resolution only the samples still in
// the gray zone are evaluated, frozen ones cost nothing more; plus the timed comparison run.
import SRCore

/// Runs a batch adaptively under an exit rule: resolution r evaluates only the samples the
/// rule has not decided at 1…r−1, and at R every sample left is decided. Resolutions the rule
/// cannot decide at are skipped (`ExitRule.ladder`).
///
/// The reference code this replaces updated every sample at every resolution and measured
/// "adaptive" accuracy on another batch; here the work skipped is work not done, counted as
/// sample-resolutions never evaluated, and measured in time against evaluating them all.
public struct AdaptiveRunner: Sendable {
    public let rule: ExitRule
    /// R: the final resolution, where every sample still active is decided.
    public let resolutions: Int

    public init(rule: ExitRule, resolutions: Int) {
        precondition(resolutions >= 1, "an adaptive run needs at least one resolution")
        self.rule = rule
        self.resolutions = resolutions
    }

    /// How samples of a network are evaluated at resolution r.
    public enum Evaluation: String, Sendable, CaseIterable {
        /// `DirectEvaluator`: the network on W^(r), X^(r) from scratch; no state between r.
        case direct
        /// `IncrementalEvaluator`: upgrade r − 1 → r; frozen samples release their state.
        case incremental
    }

    /// What an adaptive run did for every sample.
    public struct Run: Sendable, Equatable {
        public let resolutions: Int
        /// The resolution (1…R) at which each sample was decided.
        public var exitResolution: [Int]
        /// Each sample's logits at its exit resolution.
        public var exitLogits: [[Double]]
        /// evaluatedCounts[r − 1]: samples evaluated at resolution r, i.e. still active when r
        /// began. Their sum is every (sample, resolution) pair computed.
        public var evaluatedCounts: [Int]
        /// provisionalPredictions[r − 1][i]: sample i's class once resolution r is done — its
        /// exit class if it was frozen earlier, else its class at r.
        public var provisionalPredictions: [[Int]]

        public var sampleCount: Int { exitResolution.count }
        /// The final class of every sample: the prediction at its exit resolution.
        public var predictions: [Int] { provisionalPredictions.last ?? [] }
        public var evaluatedPairs: Int { evaluatedCounts.reduce(0, +) }
        /// Sample-resolutions not computed: N·R − evaluated.
        public var skippedPairs: Int { sampleCount * resolutions - evaluatedPairs }
        /// Samples not decided after resolution r (0 at R).
        public func undecided(after r: Int) -> Int { exitResolution.count { $0 > r } }
    }

    /// The adaptive loop on any evaluator: `evaluate(samples, r)` must return the logits of
    /// exactly those samples at resolution r, in that order. It is called once per resolution
    /// of the rule's ladder with the samples still active (never with a decided one), and not
    /// at all once none are.
    /// Cost besides evaluation: O(N · R · classes).
    public func run<E: Error>(sampleCount n: Int,
                              evaluate: (_ samples: [Int], _ resolution: Int) throws(E) -> [[Double]]) throws(E) -> Run {
        var active = Array(0..<n)
        var previous = [[Double]](repeating: [], count: n)
        var exitResolution = [Int](repeating: resolutions, count: n)
        var exitLogits = [[Double]](repeating: [], count: n)
        var current = [Int](repeating: 0, count: n)
        var evaluated: [Int] = [], provisional: [[Int]] = []
        let ladder = Set(rule.ladder(resolutions: resolutions))
        for r in 1...resolutions {
            // A resolution the rule cannot decide at is not evaluated (`ExitRule.ladder`).
            guard ladder.contains(r) else {
                evaluated.append(0)
                provisional.append(current)
                continue
            }
            evaluated.append(active.count)
            guard !active.isEmpty else {
                provisional.append(current)
                continue
            }
            let logits = try evaluate(active, r)
            precondition(logits.count == active.count, "the evaluator returned \(logits.count) logits for \(active.count) samples")
            var still: [Int] = []
            still.reserveCapacity(active.count)
            for (k, i) in active.enumerated() {
                let l = logits[k]
                current[i] = ExitRule.predictedClass(l)
                if r == resolutions || rule.decides(l, previous: r == 1 ? nil : previous[i], resolution: r) {
                    exitResolution[i] = r
                    exitLogits[i] = l
                    previous[i] = []
                } else {
                    previous[i] = l
                    still.append(i)
                }
            }
            provisional.append(current)
            active = still
        }
        return Run(resolutions: resolutions, exitResolution: exitResolution, exitLogits: exitLogits,
                   evaluatedCounts: evaluated, provisionalPredictions: provisional)
    }

    /// The adaptive run of `inputs` through `network` (whose R must equal `resolutions`),
    /// evaluating the active samples in slices of `sliceSize`. Throws `EarlyExitError` for a
    /// rule that does not fit the outputs, `RefinementError` from evaluation.
    public func run(_ network: QuantizedNetwork, inputs: [QuantizedTensor], evaluation: Evaluation = .direct,
                    sliceSize: Int = 1000) throws -> Run {
        try check(network)
        var evaluator = try SampleEvaluator(network: network, inputs: inputs, evaluation: evaluation, sliceSize: sliceSize)
        return try run(sampleCount: inputs.count) { samples, r throws(RefinementError) in
            try evaluator.evaluate(samples, resolution: r)
        }
    }

    private func check(_ network: QuantizedNetwork) throws(EarlyExitError) {
        guard network.resolutions == resolutions else {
            throw EarlyExitError(.invalidInput, "the runner has R = \(resolutions) but the network has \(network.resolutions) resolutions")
        }
        if let why = rule.mismatch(outputs: network.outputShape.reduce(1, *)) {
            throw EarlyExitError(.ruleMismatch, why)
        }
    }

    /// Logits of every sample at every resolution, logits[r − 1][i]: what calibration needs.
    /// `measure` times the same loop as the "evaluate everything" baseline.
    public static func allResolutions(_ network: QuantizedNetwork, inputs: [QuantizedTensor],
                                      evaluation: Evaluation = .direct, sliceSize: Int = 1000) throws(RefinementError) -> [[[Double]]] {
        var evaluator = try SampleEvaluator(network: network, inputs: inputs, evaluation: evaluation, sliceSize: sliceSize)
        let all = Array(inputs.indices)
        var out: [[[Double]]] = []
        for r in 1...network.resolutions { out.append(try evaluator.evaluate(all, resolution: r)) }
        return out
    }
}

extension AdaptiveRunner {
    /// One rule's adaptive run on a labelled set, with the figures of the report.
    public struct RuleOutcome: Sendable {
        public let rule: ExitRule
        public let run: Run
        /// Wall time of the adaptive run (the fastest of the repeats).
        public let time: Duration
        /// Share of samples still undecided after r = 1…R (0 at R).
        public let undecidedShare: [Double]
        /// Accuracy of the provisional classes after r = 1…R; the last is the adaptive accuracy.
        public let provisionalAccuracy: [Double]
        public var adaptiveAccuracy: Double { provisionalAccuracy.last ?? 0 }
        /// Share of samples evaluated at the final resolution R.
        public var finalShare: Double { Double(run.evaluatedCounts.last ?? 0) / Double(max(run.sampleCount, 1)) }
        /// Share of the N·R sample-resolutions never computed.
        public var skippedShare: Double { Double(run.skippedPairs) / Double(max(run.sampleCount * run.resolutions, 1)) }
    }

    /// Adaptive runs of several rules against evaluating every sample at every resolution,
    /// all timed in the same process with the same evaluator and slices.
    public struct Measurement: Sendable {
        public let sampleCount: Int
        public let resolutions: Int
        public let evaluation: Evaluation
        /// logits[r − 1][i] of the full pass: every sample at every resolution.
        public let logits: [[[Double]]]
        /// Accuracy of all samples evaluated at r = 1…R (from the full pass).
        public let accuracyAt: [Double]
        /// Wall time to evaluate every sample at every resolution (fastest of the repeats).
        public let allResolutionsTime: Duration
        /// The full pass's time per resolution r = 1…R (each the fastest of the repeats): with
        /// direct evaluation roughly equal, so skipping a sample-resolution saves about 1/R of
        /// a sample's full-pass time whichever r it is.
        public let resolutionTimes: [Duration]
        /// Wall time to evaluate every sample at R only, directly: the exact one-shot cost.
        public let finalOnlyTime: Duration
        public let outcomes: [RuleOutcome]
    }

    /// Measures `rules` on `inputs` with true `labels`. Each repeat times the full pass, the
    /// R-only pass and every rule's adaptive run in turn, so drifts in machine speed hit all
    /// alike; the fastest time of each is kept. The accuracy per resolution comes from the
    /// full pass, which exists for the report only: the adaptive runs never read it.
    public static func measure(_ network: QuantizedNetwork, inputs: [QuantizedTensor], labels: [Int],
                               rules: [ExitRule], evaluation: Evaluation = .direct, sliceSize: Int = 1000,
                               repeats: Int = 1) throws -> Measurement {
        guard labels.count == inputs.count else {
            throw EarlyExitError(.invalidInput, "\(inputs.count) inputs but \(labels.count) labels")
        }
        let clock = ContinuousClock()
        let r = network.resolutions, n = inputs.count
        var logits: [[[Double]]] = []
        var allTime = Duration.seconds(Int64.max), finalTime = Duration.seconds(Int64.max)
        var perResolution = [Duration](repeating: .seconds(Int64.max), count: r)
        var runs = [Run?](repeating: nil, count: rules.count)
        var times = [Duration](repeating: .seconds(Int64.max), count: rules.count)
        let direct = DirectEvaluator(network: network)
        for _ in 0..<max(1, repeats) {
            // The full pass, one resolution at a time so that each r's cost is seen.
            var evaluator = try SampleEvaluator(network: network, inputs: inputs, evaluation: evaluation, sliceSize: sliceSize)
            let all = Array(inputs.indices)
            var pass: [[[Double]]] = [], total = Duration.zero
            for level in 1...r {
                let t = try clock.measure { pass.append(try evaluator.evaluate(all, resolution: level)) }
                perResolution[level - 1] = min(perResolution[level - 1], t)
                total += t
            }
            logits = pass
            allTime = min(allTime, total)
            finalTime = min(finalTime, try clock.measure {
                var start = 0
                let operands = network.operands(atResolution: r)
                while start < n {
                    _ = try direct.evaluate(Array(inputs[start..<min(start + sliceSize, n)]), resolution: r, operands: operands)
                    start += sliceSize
                }
            })
            for (k, rule) in rules.enumerated() {
                let runner = AdaptiveRunner(rule: rule, resolutions: r)
                times[k] = min(times[k], try clock.measure {
                    runs[k] = try runner.run(network, inputs: inputs, evaluation: evaluation, sliceSize: sliceSize)
                })
            }
        }
        func accuracy(_ predictions: [Int]) -> Double {
            Double(zip(predictions, labels).count { $0 == $1 }) / Double(max(n, 1))
        }
        let outcomes = rules.indices.map { k in
            let run = runs[k]!
            return RuleOutcome(rule: rules[k], run: run, time: times[k],
                               undecidedShare: (1...r).map { Double(run.undecided(after: $0)) / Double(max(n, 1)) },
                               provisionalAccuracy: run.provisionalPredictions.map(accuracy))
        }
        return Measurement(sampleCount: n, resolutions: r, evaluation: evaluation, logits: logits,
                           accuracyAt: logits.map { accuracy($0.map(ExitRule.predictedClass)) },
                           allResolutionsTime: allTime, resolutionTimes: perResolution, finalOnlyTime: finalTime,
                           outcomes: outcomes)
    }
}

/// Evaluates chosen samples of a network at a resolution, in slices to bound memory.
struct SampleEvaluator {
    let network: QuantizedNetwork
    let inputs: [QuantizedTensor]
    let direct: DirectEvaluator
    let sliceSize: Int
    /// Incremental state, nil for direct evaluation.
    var incremental: IncrementalEvaluator?
    /// The samples upgraded last time: those missing now were frozen and can let go of state.
    var lastSamples: [Int] = []
    /// Each resolution's operands (W's digit planes split once), built when first used.
    var operands: [Int: ResolutionOperands] = [:]

    init(network: QuantizedNetwork, inputs: [QuantizedTensor], evaluation: AdaptiveRunner.Evaluation,
         sliceSize: Int) throws(RefinementError) {
        self.network = network
        self.inputs = inputs
        self.direct = DirectEvaluator(network: network)
        self.sliceSize = max(1, sliceSize)
        self.incremental = evaluation == .incremental ? try IncrementalEvaluator(network: network, inputs: inputs) : nil
    }

    mutating func evaluate(_ samples: [Int], resolution r: Int) throws(RefinementError) -> [[Double]] {
        var out: [[Double]] = []
        out.reserveCapacity(samples.count)
        if incremental != nil {
            let now = Set(samples)
            for i in lastSamples where !now.contains(i) { incremental!.freeze(i) }
            lastSamples = samples
            precondition(samples.allSatisfy { incremental!.resolution(of: $0) == incremental!.resolution(of: samples[0]) }
                         && samples.allSatisfy { incremental!.resolution(of: $0) < r },
                         "incremental evaluation at resolution \(r) needs every sample at one resolution below it")
        }
        var start = 0
        while start < samples.count {
            let slice = Array(samples[start..<min(start + sliceSize, samples.count)])
            var logits: [ExactTensor]
            if incremental != nil {
                // One upgrade per resolution the ladder skipped, then the one asked for.
                repeat { logits = try incremental!.upgrade(slice) } while incremental!.resolution(of: slice[0]) < r
            } else {
                if operands[r] == nil { operands[r] = network.operands(atResolution: r) }
                logits = try direct.evaluate(slice.map { inputs[$0] }, resolution: r, operands: operands[r])
            }
            out.append(contentsOf: logits.map(\.values))
            start += slice.count
        }
        return out
    }
}
