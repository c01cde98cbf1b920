// Early exit: the rules' decisions on hand-made logits, calibration's loss bound on its own
// split, frozen samples never evaluated again, and an adaptive run of a tiny random network.
import Testing
@testable import SRCore
@testable import SRNeural

@Suite struct EarlyExitTests {
    // MARK: Rules

    @Test func marginRuleComparesTopTwoLogitsPerResolution() {
        let logits = [3.0, 1.0, 2.5]   // margin 0.5
        #expect(ExitRule.margin([0.5]).decides(logits, previous: nil, resolution: 1))
        #expect(!ExitRule.margin([0.6]).decides(logits, previous: nil, resolution: 1))
        let perResolution = ExitRule.margin([10, 0.1])
        #expect(!perResolution.decides(logits, previous: nil, resolution: 1))
        #expect(perResolution.decides(logits, previous: nil, resolution: 2))
        #expect(perResolution.decides(logits, previous: nil, resolution: 5), "the last threshold holds beyond the list")
        #expect(!ExitRule.referenceMargin.decides([1.0, 0.96], previous: nil, resolution: 3))
    }

    @Test func entropyRuleDecidesConfidentSoftmaxes() {
        let uniform = [0.0, 0.0, 0.0]   // H = log 3 ≈ 1.0986
        #expect(abs(ExitRule.softmaxEntropy(uniform) - 1.0986122886681098) < 1e-12)
        #expect(!ExitRule.entropy([1.0]).decides(uniform, previous: nil, resolution: 1))
        #expect(ExitRule.entropy([1.1]).decides(uniform, previous: nil, resolution: 1))
        #expect(ExitRule.entropy([0.01]).decides([12, 0, 0], previous: nil, resolution: 1))
        #expect(ExitRule.softmaxEntropy([800, 0, -800]).isFinite, "large logits must not overflow")
    }

    @Test func stabilityRuleNeedsTheSameClassTwice() {
        let rule = ExitRule.stability(margin: [0])
        #expect(!rule.decides([2, 1, 0], previous: nil, resolution: 1), "nothing to compare with at r = 1")
        #expect(rule.decides([2, 1, 0], previous: [5, 0, 0], resolution: 2))
        #expect(!rule.decides([2, 1, 0], previous: [0, 5, 0], resolution: 2))
        let withMargin = ExitRule.stability(margin: [1.5])
        #expect(!withMargin.decides([2, 1, 0], previous: [5, 0, 0], resolution: 2))
        #expect(withMargin.decides([3, 1, 0], previous: [5, 0, 0], resolution: 2))
    }

    @Test func grayZoneRuleForBinaryNets() {
        let rule = ExitRule.referenceGrayZone   // sigmoid in [0.3, 0.6] stays gray
        #expect(!rule.decides([0], previous: nil, resolution: 1))
        #expect(!rule.decides([0.3], previous: nil, resolution: 1))     // σ = 0.574
        #expect(rule.decides([0.9], previous: nil, resolution: 1))      // σ = 0.711
        #expect(rule.decides([-1], previous: nil, resolution: 1))       // σ = 0.269
        #expect(rule.decides([60], previous: nil, resolution: 1), "decided in logits, where σ would round to 1")
        #expect(rule.mismatch(outputs: 10) != nil && rule.mismatch(outputs: 1) == nil)
        #expect(ExitRule.margin([]).mismatch(outputs: 3) != nil)
        // A single logit is the two classes (0, z) for the other rules.
        #expect(ExitRule.logitMargin([-2.5]) == 2.5 && ExitRule.predictedClass([-2.5]) == 0)
    }

    @Test func familiesDecideExactlyWhatTheirRulesDecide() {
        var g = SplitMix64(seed: 5)
        for family in ExitRule.Family.allCases {
            let classes = family == .grayZone ? 1 : 4
            for _ in 0..<200 {
                let l = (0..<classes).map { _ in Double(Int.random(in: -8...8, using: &g)) / 4 }
                let p = (0..<classes).map { _ in Double(Int.random(in: -8...8, using: &g)) / 4 }
                let τ = Double(Int.random(in: (family == .grayZone ? 0 : -2)...12, using: &g)) / 8
                let rule = family.rule(thresholds: [τ])
                #expect(family.passes(family.score(l, previous: p), threshold: τ) == rule.decides(l, previous: p, resolution: 2),
                        "\(family) τ = \(τ) logits \(l) previous \(p)")
            }
        }
    }

    // MARK: Calibration

    @Test(arguments: [ExitRule.Family.margin, .entropy, .stability, .grayZone])
    func calibrationKeepsTheLossBoundOnItsSplit(family: ExitRule.Family) throws {
        let data = SyntheticLogits(samples: 240, resolutions: 5, classes: family == .grayZone ? 1 : 4, seed: 11)
        for maxLoss in [0, 0.01, 0.05] {
            let c = try ExitCalibration.calibrate(family, logits: data.logits, labels: data.labels, maxLoss: maxLoss)
            #expect(c.allowedLoss == Int(maxLoss * 240 + 1e-9))
            #expect(c.adaptiveCorrect >= c.referenceCorrect - c.allowedLoss)
            #expect(c.accuracyLoss <= maxLoss + 1e-12)
            #expect(c.referenceCorrect == data.correct(at: 5))
            // The rule, run for real, does on the split exactly what calibration counted.
            let run = AdaptiveRunner(rule: c.rule, resolutions: 5).run(sampleCount: 240) { samples, r in
                samples.map { data.logits[r - 1][$0] }
            }
            #expect(zip(run.predictions, data.labels).count { $0 == $1 } == c.adaptiveCorrect)
            #expect(run.skippedPairs == c.skippedPairs)
            #expect((1...5).map { r in run.exitResolution.count { $0 == r } } == c.exitCounts)
            if maxLoss == 0.05 {
                #expect(c.skippedShare > 0.2, "easy samples should exit early")
                #expect(c.exitCounts.dropLast().reduce(0, +) > 0, "R alone is not an early exit")
            }
        }
        let again = try ExitCalibration.calibrate(family, logits: data.logits, labels: data.labels, maxLoss: 0.01)
        #expect(again == (try ExitCalibration.calibrate(family, logits: data.logits, labels: data.labels, maxLoss: 0.01)))
    }

    @Test func calibrationSavesMoreWhenAllowedToLoseMore() throws {
        let data = SyntheticLogits(samples: 240, resolutions: 5, classes: 4, seed: 3)
        let tight = try ExitCalibration.calibrate(.margin, logits: data.logits, labels: data.labels, maxLoss: 0)
        let loose = try ExitCalibration.calibrate(.margin, logits: data.logits, labels: data.labels, maxLoss: 0.2)
        #expect(loose.costShare <= tight.costShare)
        #expect(loose.exitCounts.dropLast().reduce(0, +) > 0, "some samples exit before R")
        if case .margin(let t) = loose.rule { #expect(t.count == 5 && t[4] == .infinity) } else { Issue.record("not a margin rule") }
    }

    @Test func aSafetyFactorBoundsTheLossPlusItsSpread() throws {
        let data = SyntheticLogits(samples: 240, resolutions: 5, classes: 4, seed: 21)
        for z in [1.0, 2.0] {
            let c = try ExitCalibration.calibrate(.margin, logits: data.logits, labels: data.labels, maxLoss: 0.05, safety: z)
            #expect(c.lostSamples - c.gainedSamples == c.referenceCorrect - c.adaptiveCorrect)
            #expect(Double(c.lostSamples - c.gainedSamples) + z * Double(c.lostSamples + c.gainedSamples).squareRoot()
                    <= Double(c.allowedLoss))
            #expect(c.skippedPairs > 0)
        }
        #expect(throws: EarlyExitError.self) {
            try ExitCalibration.calibrate(.margin, logits: data.logits, labels: data.labels, maxLoss: 0.05, safety: -1)
        }
    }

    @Test func calibrationRejectsInputsThatDoNotFit() {
        let data = SyntheticLogits(samples: 20, resolutions: 3, classes: 4, seed: 1)
        #expect(throws: EarlyExitError.self) {
            try ExitCalibration.calibrate(.grayZone, logits: data.logits, labels: data.labels, maxLoss: 0.01)
        }
        #expect(throws: EarlyExitError.self) {
            try ExitCalibration.calibrate(.margin, logits: data.logits, labels: Array(data.labels.dropLast()), maxLoss: 0.01)
        }
        #expect(throws: EarlyExitError.self) {
            try ExitCalibration.calibrate(.margin, logits: data.logits, labels: data.labels, maxLoss: 0.5 * 10)
        }
        #expect(throws: EarlyExitError.self) {
            try ExitCalibration.calibrate(.margin, logits: [], labels: data.labels, maxLoss: 0.01)
        }
    }

    // MARK: The runner skips frozen samples

    @Test func frozenSamplesAreNeverEvaluatedAgain() {
        let data = SyntheticLogits(samples: 300, resolutions: 6, classes: 5, seed: 8)
        for rule in [ExitRule.margin([1.5, 1.0, 0.8]), .entropy([0.3]), .stability(margin: [0.2]), .stability(margin: [.infinity])] {
            var pairs = 0
            var decided = Set<Int>()
            var lastExits: [Int: Int] = [:]
            var calls: [Int] = []
            let runner = AdaptiveRunner(rule: rule, resolutions: 6)
            let run = runner.run(sampleCount: 300) { samples, r in
                #expect(decided.isDisjoint(with: samples), "resolution \(r) asked for a frozen sample")
                #expect(Set(samples).count == samples.count)
                calls.append(r)
                pairs += samples.count
                let logits = samples.map { data.logits[r - 1][$0] }
                // Mirror the rule to learn who freezes now: every sample not asked again.
                for (k, i) in samples.enumerated() where r == 6 || rule.decides(logits[k], previous: r == 1 ? nil : data.logits[r - 2][i], resolution: r) {
                    decided.insert(i)
                    lastExits[i] = r
                }
                return logits
            }
            // Active at r = not decided at 1…r−1; the evaluator saw exactly those.
            let active = (1...6).map { r in run.exitResolution.count { $0 >= r } }
            #expect(run.evaluatedCounts == active)
            #expect(pairs == active.reduce(0, +) && pairs == run.evaluatedPairs)
            #expect(run.evaluatedPairs == run.exitResolution.reduce(0, +), "sample i is evaluated at 1…exit_i only")
            #expect(run.skippedPairs == 300 * 6 - pairs)
            #expect(calls == Array(1...(run.exitResolution.max() ?? 0)), "no call once everyone is decided")
            #expect((0..<300).allSatisfy { lastExits[$0] == run.exitResolution[$0] })
            #expect((0..<300).allSatisfy { run.exitLogits[$0] == data.logits[run.exitResolution[$0] - 1][$0] })
            #expect(run.undecided(after: 6) == 0)
            if case .stability(let t) = rule, t == [.infinity] { #expect(run.skippedPairs == 0) }
        }
    }

    // MARK: End to end

    @Test func adaptiveRunOfATinyRandomNetwork() throws {
        var g = SplitMix64(seed: 99)
        let (manifest, tensors, samples, net) = try RefinementFixture.splitMLP([12, 10, 8, 3], resolutions: 5, samples: 48, using: &g)
        let inputs = try samples.map { try net.quantize(input: $0) }
        let direct = DirectEvaluator(network: net)
        // Labels: the float network's own classes, so R is nearly always right.
        let labels = samples.map { s in
            ExitRule.predictedClass(RefinementFixture.floatForward(manifest, shapes: tensors.mapValues(\.shape),
                                                                   input: s.values.map(Double.init)) {
                tensors[$0]!.values.map(Double.init)
            })
        }
        let full = try AdaptiveRunner.allResolutions(net, inputs: inputs, sliceSize: 7)
        for r in 1...5 { #expect(full[r - 1] == (try direct.evaluate(inputs, resolution: r)).map(\.values)) }
        let calibrated = try ExitCalibration.calibrate(.margin, logits: full, labels: labels, maxLoss: 0)

        let runner = AdaptiveRunner(rule: calibrated.rule, resolutions: 5)
        let run = try runner.run(net, inputs: inputs, evaluation: .direct, sliceSize: 5)
        #expect(try runner.run(net, inputs: inputs, evaluation: .incremental, sliceSize: 5) == run)
        for i in inputs.indices {
            #expect(run.exitLogits[i] == full[run.exitResolution[i] - 1][i], "sample \(i) exits with its exact logits")
        }
        #expect(zip(run.predictions, labels).count { $0 == $1 } == calibrated.adaptiveCorrect)

        let m = try AdaptiveRunner.measure(net, inputs: inputs, labels: labels,
                                           rules: [calibrated.rule, .referenceMargin], sliceSize: 16)
        #expect(m.logits == full && m.accuracyAt.count == 5)
        #expect(m.outcomes[0].run == run)
        #expect(m.outcomes[0].adaptiveAccuracy >= m.accuracyAt[4], "no loss allowed on the calibration split")
        #expect(m.outcomes.allSatisfy { $0.undecidedShare[4] == 0 && $0.finalShare == $0.undecidedShare[3] })
        #expect(throws: EarlyExitError.self) {
            try AdaptiveRunner(rule: .referenceGrayZone, resolutions: 5).run(net, inputs: inputs)
        }
        #expect(throws: EarlyExitError.self) {
            try AdaptiveRunner(rule: .referenceMargin, resolutions: 4).run(net, inputs: inputs)
        }
    }
}

/// Logits that sharpen with resolution: every sample has a label and a strength (some
/// negative, so R is wrong on them); at r the label's logit gets strength · r/R on top of
/// noise that shrinks like 1/r. Binary (classes = 1) gives one logit, positive for label 1.
struct SyntheticLogits {
    let logits: [[[Double]]]
    let labels: [Int]

    init(samples n: Int, resolutions r: Int, classes c: Int, seed: UInt64) {
        var g = SplitMix64(seed: seed)
        let labels = (0..<n).map { _ in Int.random(in: 0..<max(c, 2), using: &g) }
        let strength = (0..<n).map { _ in Double.random(in: -0.5...3, using: &g) }
        let noise = (0..<n).map { _ in (0..<max(c, 2)).map { _ in Double.random(in: -1...1, using: &g) } }
        logits = (1...r).map { level in
            (0..<n).map { i in
                // Quarter-unit dyadic values, like the exact logits of a network.
                let scores = (0..<max(c, 2)).map { k in
                    ((noise[i][k] * 2 / Double(level) + (k == labels[i] ? strength[i] * Double(level) / Double(r) : 0)) * 4).rounded() / 4
                }
                return c == 1 ? [scores[1] - scores[0]] : scores
            }
        }
        self.labels = labels
    }

    func correct(at r: Int) -> Int {
        zip(logits[r - 1], labels).count { ExitRule.predictedClass($0) == $1 }
    }
}
