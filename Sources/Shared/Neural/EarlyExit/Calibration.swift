// Calibrating an exit rule on a held-out split: the per-resolution thresholds that skip the most
// sample-resolutions while adaptive accuracy stays within a requested loss of resolution R.
import SRCore

/// A rule whose thresholds were chosen on a calibration split, and what it did there.
///
/// The reference is the final resolution R (the exact network on W^(R), X^(R)), not the float
/// forward pass: R is what the adaptive run converges to, and a run in which nothing exits
/// early equals it exactly, so the constraint can always be met. The gap between R and the
/// float pass is the quantization loss, reported separately by the benchmark.
public struct ExitCalibration: Sendable, Equatable {
    /// The calibrated rule; its threshold at R is +∞ (at R every sample is decided anyway).
    public let rule: ExitRule
    /// Score thresholds τ_r for r = 1…R−1 (`ExitRule.Family.score`); +∞: nobody exits at r.
    public let thresholds: [Double]
    public let sampleCount: Int
    public let resolutions: Int
    /// Samples the final resolution classifies correctly.
    public let referenceCorrect: Int
    /// Samples the adaptive run classifies correctly (each at its exit resolution).
    public let adaptiveCorrect: Int
    /// The most correct samples the run may lose: ⌊maxLoss · N⌋.
    public let allowedLoss: Int
    /// Samples exiting at r = 1…R.
    public let exitCounts: [Int]
    /// Sample-resolutions never computed: Σ_i (R − resolutions of the ladder up to exit_i).
    public let skippedPairs: Int
    /// Samples right at R but wrong at their exit, and the reverse; lost − gained is the loss.
    public let lostSamples: Int
    public let gainedSamples: Int
    /// The safety factor z the thresholds were chosen with.
    public let safety: Double

    public var referenceAccuracy: Double { Double(referenceCorrect) / Double(max(sampleCount, 1)) }
    public var adaptiveAccuracy: Double { Double(adaptiveCorrect) / Double(max(sampleCount, 1)) }
    /// Accuracy lost versus R (negative when the early exits happen to be right more often).
    public var accuracyLoss: Double { referenceAccuracy - adaptiveAccuracy }
    /// Share of the N·R sample-resolutions skipped.
    public var skippedShare: Double { Double(skippedPairs) / Double(max(sampleCount * resolutions, 1)) }
    /// Cost of the adaptive run over the cost of evaluating every sample at every resolution,
    /// by the per-resolution costs calibration was given.
    public let costShare: Double

    /// Chooses thresholds for `family` on `logits[r − 1][i]` (every sample at every resolution
    /// 1…R) with true `labels`, minimising the cost of the sample-resolutions evaluated —
    /// resolutions the rule skips outright (threshold +∞, `ExitRule.ladder`) cost nothing;
    /// resolution r costs `costs[r − 1]` per sample (default r; a network's own costs come from
    /// `QuantizedNetwork.resolutionCosts`) — subject to
    /// adaptive correct ≥ R correct − ⌊maxLoss · N⌋ on this split (`maxLoss` a fraction:
    /// 0.005 is half a percentage point).
    ///
    /// Search, deterministic: candidate thresholds at resolution r are midpoints between
    /// consecutive distinct scores (thinned to `candidates` by rank), so no calibration score
    /// sits on a threshold. (1) A one-parameter family: for ε on a fixed grid, resolution
    /// r = 1, 2, … takes the lowest candidate at which the samples still active that would exit
    /// there lose at most ε of them versus R (Σ correct_R − correct_r ≤ ε · exits); the
    /// feasible ε skipping most wins. It spreads the loss over resolutions instead of spending
    /// it all at r = 1. (2) Coordinate ascent from there: each τ_r in turn is moved to the
    /// candidate that skips most while the whole run stays feasible, until nothing improves.
    /// Moving τ_r to +∞ skips resolution r for everyone: worth it when too few samples exit
    /// there to pay for evaluating it (a resolution-1 pass near chance, say). Each step only
    /// adds savings.
    ///
    /// `safety` z > 0 guards against picking thresholds that are feasible on this split by luck
    /// (the search tries thousands): a run is feasible only if lost − gained + z·√(lost + gained)
    /// ≤ ⌊maxLoss · N⌋, where lost (gained) counts samples right (wrong) at R but wrong (right)
    /// at their exit — the net loss plus z standard deviations of it under resampling. z = 0 is
    /// the plain constraint.
    /// Cost: O((grid + passes · R · candidates) · N · R).
    public static func calibrate(_ family: ExitRule.Family, logits: [[[Double]]], labels: [Int],
                                 maxLoss: Double, safety z: Double = 0, costs: [Double]? = nil,
                                 candidates: Int = 200) throws(EarlyExitError) -> ExitCalibration {
        guard z >= 0 && z.isFinite else {
            throw EarlyExitError(.invalidInput, "the safety factor z must be finite and ≥ 0 (0: the plain constraint; 1.645: a one-sided 95 % bound)")
        }
        // Without a network's costs: resolution r costs r, as its operands have r chunks. (Equal
        // costs would make R alone — one resolution per sample — always the cheapest.)
        let costs = costs ?? (1...max(1, logits.count)).map(Double.init)
        guard costs.count == logits.count, costs.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw EarlyExitError(.invalidInput, "give one finite cost > 0 per resolution (\(logits.count)), got \(costs)")
        }
        let problem = try Problem(family: family, logits: logits, labels: labels, maxLoss: maxLoss,
                                  safety: z, costs: costs, candidateLimit: max(1, candidates))
        var best = problem.outcome(problem.noExits)
        for epsilon in Self.epsilonGrid {
            let outcome = problem.outcome(problem.precisionThresholds(epsilon: epsilon))
            if outcome.feasible && outcome.cost < best.cost { best = outcome }
        }
        best = problem.ascend(from: best)
        let τ = (0..<(problem.resolutions - 1)).map { problem.candidates[$0][best.choice[$0]] }
        return ExitCalibration(
            rule: family.rule(thresholds: τ + [.infinity]), thresholds: τ,
            sampleCount: problem.n, resolutions: problem.resolutions,
            referenceCorrect: problem.referenceCorrect, adaptiveCorrect: best.correct,
            allowedLoss: problem.allowedLoss, exitCounts: best.exits, skippedPairs: best.skipped,
            lostSamples: best.lost, gainedSamples: best.gained, safety: z,
            costShare: best.cost / (Double(problem.n) * costs.reduce(0, +)))
    }

    /// Tolerated loss per exit in stage (1), from "never lose a sample" to "anything goes".
    static let epsilonGrid: [Double] = [0, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075,
                                        0.1, 0.15, 0.2, 0.3, 0.5, 1]

    /// Scores and correctness of every sample at every resolution, flat (index r·n + i).
    struct Problem {
        let n: Int
        let resolutions: Int
        let family: ExitRule.Family
        /// scores[(r − 1)·n + i] for r = 1…R−1.
        let scores: [Double]
        /// correct[(r − 1)·n + i] for r = 1…R.
        let correct: [Bool]
        let referenceCorrect: Int
        let allowedLoss: Int
        let safety: Double
        /// Cost of evaluating one sample at resolution r = 1…R.
        let costs: [Double]
        /// Per resolution 1…R−1: thresholds in decreasing order, +∞ first.
        let candidates: [[Double]]

        struct Outcome {
            var choice: [Int]   // candidate index per resolution
            var correct: Int
            var skipped: Int
            /// Σ over samples of the costs of the resolutions evaluated for it.
            var cost: Double
            var exits: [Int]
            var lost: Int
            var gained: Int
            var feasible: Bool
        }

        init(family: ExitRule.Family, logits: [[[Double]]], labels: [Int], maxLoss: Double,
             safety: Double, costs: [Double], candidateLimit: Int) throws(EarlyExitError) {
            let r = logits.count
            guard r >= 1 else { throw EarlyExitError(.invalidInput, "no resolutions: logits must hold every sample at r = 1…R") }
            let n = labels.count
            guard n >= 1 else { throw EarlyExitError(.invalidInput, "the calibration split is empty; give it labelled samples") }
            for (k, level) in logits.enumerated() where level.count != n {
                throw EarlyExitError(.invalidInput, "resolution \(k + 1) has logits for \(level.count) samples but there are \(n) labels")
            }
            guard (0...1).contains(maxLoss) else {
                throw EarlyExitError(.invalidInput, "the tolerated accuracy loss \(maxLoss) is a fraction in [0, 1] (0.005 = half a percentage point)")
            }
            let outputs = logits[0][0].count
            if family == .grayZone, outputs != 1 {
                throw EarlyExitError(.ruleMismatch, "a gray-zone rule needs a single logit (sigmoid head); this network has \(outputs) — calibrate margin, entropy or stability")
            }
            self.n = n
            self.resolutions = r
            self.family = family
            var scores = [Double](repeating: 0, count: (r - 1) * n)
            var correct = [Bool](repeating: false, count: r * n)
            for level in 0..<r {
                for i in 0..<n {
                    correct[level * n + i] = ExitRule.predictedClass(logits[level][i]) == labels[i]
                    if level < r - 1 {
                        scores[level * n + i] = family.score(logits[level][i], previous: level == 0 ? nil : logits[level - 1][i])
                    }
                }
            }
            self.scores = scores
            self.correct = correct
            self.referenceCorrect = (0..<n).reduce(0) { $0 + (correct[(r - 1) * n + $1] ? 1 : 0) }
            // The small epsilon keeps ⌊0.005 · 2000⌋ = 10 despite 0.005 not being exact in binary.
            self.allowedLoss = Int((maxLoss * Double(n) + 1e-9).rounded(.down))
            self.safety = safety
            self.costs = costs
            self.candidates = (0..<(r - 1)).map { level in
                Self.candidateThresholds(Array(scores[(level * n)..<((level + 1) * n)]), limit: candidateLimit)
            }
        }

        /// +∞, then midpoints between consecutive distinct finite scores, highest first, at
        /// most `limit` of them chosen evenly by rank (the lowest always kept).
        static func candidateThresholds(_ scores: [Double], limit: Int) -> [Double] {
            let distinct = Array(Set(scores.filter(\.isFinite))).sorted(by: >)
            guard distinct.count >= 2 else { return [.infinity] }
            var mids = (1..<distinct.count).map { distinct[$0 - 1] / 2 + distinct[$0] / 2 }
            if mids.count > limit {
                let m = mids.count
                mids = (1...limit).map { mids[($0 * m) / limit - 1] }
            }
            return [.infinity] + mids
        }

        var noExits: [Int] { [Int](repeating: 0, count: resolutions - 1) }

        func score(_ level: Int, _ i: Int) -> Double { scores[level * n + i] }
        func isCorrect(_ level: Int, _ i: Int) -> Bool { correct[level * n + i] }

        /// Runs the rule with these candidate thresholds over the split. O(N · R).
        func outcome(_ choice: [Int]) -> Outcome {
            let τ = choice.enumerated().map { candidates[$0.offset][$0.element] }
            var right = 0, skipped = 0, lost = 0, gained = 0
            var exits = [Int](repeating: 0, count: resolutions)
            let last = (resolutions - 1) * n
            // Resolutions the rule evaluates (`ExitRule.ladder`): evaluated[e − 1] is how many
            // of 1…e a sample exiting at e cost.
            let ladder = Set(family.rule(thresholds: τ + [.infinity]).ladder(resolutions: resolutions))
            var evaluated = [Int](repeating: 0, count: resolutions), sum = 0
            var spent = [Double](repeating: 0, count: resolutions), total = 0.0
            for r in 1...resolutions {
                if ladder.contains(r) {
                    sum += 1
                    total += costs[r - 1]
                }
                evaluated[r - 1] = sum
                spent[r - 1] = total
            }
            var cost = 0.0
            for i in 0..<n {
                var exit = resolutions
                for level in 0..<(resolutions - 1) where family.passes(scores[level * n + i], threshold: τ[level]) {
                    exit = level + 1
                    break
                }
                exits[exit - 1] += 1
                skipped += resolutions - evaluated[exit - 1]
                cost += spent[exit - 1]
                let here = correct[(exit - 1) * n + i], atR = correct[last + i]
                if here { right += 1 }
                if here != atR { if atR { lost += 1 } else { gained += 1 } }
            }
            // lost − gained = R correct − adaptive correct; integers, so z = 0 is exact.
            let bound = Double(lost - gained) + safety * Double(lost + gained).squareRoot()
            return Outcome(choice: choice, correct: right, skipped: skipped, cost: cost, exits: exits, lost: lost, gained: gained,
                           feasible: right >= referenceCorrect - allowedLoss && bound <= Double(allowedLoss))
        }

        /// Stage (1): per resolution upward, the lowest candidate whose exits among the still
        /// active samples lose at most ε of them versus R.
        func precisionThresholds(epsilon: Double) -> [Int] {
            let last = resolutions - 1
            var active = Array(0..<n)
            var choice = noExits
            for level in 0..<(resolutions - 1) {
                // Highest score first; ties by index so the order is deterministic.
                let order = active.sorted { (score(level, $0), $1) > (score(level, $1), $0) }
                var taken = 0, loss = 0, pick = 0
                for (k, τ) in candidates[level].enumerated() {
                    while taken < order.count && family.passes(score(level, order[taken]), threshold: τ) {
                        let i = order[taken]
                        loss += (isCorrect(last, i) ? 1 : 0) - (isCorrect(level, i) ? 1 : 0)
                        taken += 1
                    }
                    if taken > 0 && Double(loss) <= epsilon * Double(taken) { pick = k }
                }
                choice[level] = pick
                let τ = candidates[level][pick]
                active.removeAll { family.passes(score(level, $0), threshold: τ) }
            }
            return choice
        }

        /// Stage (2): moves one threshold at a time to its best feasible candidate until no
        /// single change costs less — lower, or up to +∞, which skips the resolution (nothing
        /// can exit there, so the runners do not evaluate it). Terminates: the cost strictly
        /// falls and takes finitely many values.
        func ascend(from start: Outcome) -> Outcome {
            var best = start
            var improved = true
            while improved {
                improved = false
                for level in 0..<(resolutions - 1) {
                    let current = best.choice[level]
                    for k in candidates[level].indices where k != current {
                        var choice = best.choice
                        choice[level] = k
                        let o = outcome(choice)
                        if o.feasible && o.cost < best.cost {
                            best = o
                            improved = true
                        }
                    }
                }
            }
            return best
        }
    }
}
