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
    /// Sample-resolutions never computed: Σ_i (R − exit_i).
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

    /// Chooses thresholds for `family` on `logits[r − 1][i]` (every sample at every resolution
    /// 1…R) with true `labels`, maximising skipped sample-resolutions subject to
    /// adaptive correct ≥ R correct − ⌊maxLoss · N⌋ on this split (`maxLoss` a fraction:
    /// 0.005 is half a percentage point).
    ///
    /// Search, deterministic: candidate thresholds at resolution r are midpoints between
    /// consecutive distinct scores (thinned to `candidates` by rank), so no calibration score
    /// sits on a threshold. (1) A one-parameter family: for ε on a fixed grid, resolution
    /// r = 1, 2, … takes the lowest candidate at which the samples still active that would exit
    /// there lose at most ε of them versus R (Σ correct_R − correct_r ≤ ε · exits); the
    /// feasible ε skipping most wins. It spreads the loss over resolutions instead of spending
    /// it all at r = 1. (2) Coordinate ascent from there: each τ_r in turn is lowered to the
    /// candidate that skips most while the whole run stays feasible, until nothing improves.
    /// Lowering any τ_r never skips less, so (2) only adds savings.
    ///
    /// `safety` z > 0 guards against picking thresholds that are feasible on this split by luck
    /// (the search tries thousands): a run is feasible only if lost − gained + z·√(lost + gained)
    /// ≤ ⌊maxLoss · N⌋, where lost (gained) counts samples right (wrong) at R but wrong (right)
    /// at their exit — the net loss plus z standard deviations of it under resampling. z = 0 is
    /// the plain constraint.
    /// Cost: O((grid + passes · R · candidates) · N · R).
    public static func calibrate(_ family: ExitRule.Family, logits: [[[Double]]], labels: [Int],
                                 maxLoss: Double, safety z: Double = 0,
                                 candidates: Int = 200) throws(EarlyExitError) -> ExitCalibration {
        guard z >= 0 && z.isFinite else {
            throw EarlyExitError(.invalidInput, "the safety factor z must be finite and ≥ 0 (0: the plain constraint; 1.645: a one-sided 95 % bound)")
        }
        let problem = try Problem(family: family, logits: logits, labels: labels, maxLoss: maxLoss,
                                  safety: z, candidateLimit: max(1, candidates))
        var best = problem.outcome(problem.noExits)
        for epsilon in Self.epsilonGrid {
            let outcome = problem.outcome(problem.precisionThresholds(epsilon: epsilon))
            if outcome.feasible && outcome.skipped > best.skipped { best = outcome }
        }
        best = problem.ascend(from: best)
        let τ = (0..<(problem.resolutions - 1)).map { problem.candidates[$0][best.choice[$0]] }
        return ExitCalibration(
            rule: family.rule(thresholds: τ + [.infinity]), thresholds: τ,
            sampleCount: problem.n, resolutions: problem.resolutions,
            referenceCorrect: problem.referenceCorrect, adaptiveCorrect: best.correct,
            allowedLoss: problem.allowedLoss, exitCounts: best.exits, skippedPairs: best.skipped,
            lostSamples: best.lost, gainedSamples: best.gained, safety: z)
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
        /// Per resolution 1…R−1: thresholds in decreasing order, +∞ first.
        let candidates: [[Double]]

        struct Outcome {
            var choice: [Int]   // candidate index per resolution
            var correct: Int
            var skipped: Int
            var exits: [Int]
            var lost: Int
            var gained: Int
            var feasible: Bool
        }

        init(family: ExitRule.Family, logits: [[[Double]]], labels: [Int], maxLoss: Double,
             safety: Double, candidateLimit: Int) throws(EarlyExitError) {
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
            for i in 0..<n {
                var exit = resolutions
                for level in 0..<(resolutions - 1) where family.passes(scores[level * n + i], threshold: τ[level]) {
                    exit = level + 1
                    break
                }
                exits[exit - 1] += 1
                skipped += resolutions - exit
                let here = correct[(exit - 1) * n + i], atR = correct[last + i]
                if here { right += 1 }
                if here != atR { if atR { lost += 1 } else { gained += 1 } }
            }
            // lost − gained = R correct − adaptive correct; integers, so z = 0 is exact.
            let bound = Double(lost - gained) + safety * Double(lost + gained).squareRoot()
            return Outcome(choice: choice, correct: right, skipped: skipped, exits: exits, lost: lost, gained: gained,
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

        /// Stage (2): lowers one threshold at a time to its best feasible candidate until no
        /// single change skips more. Terminates: `skipped` strictly grows and is bounded.
        func ascend(from start: Outcome) -> Outcome {
            var best = start
            var improved = true
            while improved {
                improved = false
                for level in 0..<(resolutions - 1) {
                    let current = best.choice[level]
                    for k in (current + 1)..<max(current + 1, candidates[level].count) {
                        var choice = best.choice
                        choice[level] = k
                        let o = outcome(choice)
                        if o.feasible && o.skipped > best.skipped {
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
