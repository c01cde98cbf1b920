// Resolutions a rule cannot decide at are not evaluated: the ladder itself, the adaptive runner
// (direct and incremental), the pool's aggregation state machine, and calibration choosing to
// skip a resolution when too few samples exit there to pay for it.
import Testing
@testable import SRAggregation
@testable import SRCore
@testable import SRNeural

@Suite struct ExitLadderTests {
    @Test func theLadderHoldsEveryResolutionTheRuleCanDecideAtThenR() throws {
        #expect(ExitRule.margin([.infinity, 1, .infinity, 0.3]).ladder(resolutions: 6) == [2, 4, 5, 6])
        #expect(ExitRule.entropy([-.infinity, 0.5]).ladder(resolutions: 3) == [2, 3])
        #expect(ExitRule.grayZone([ExitRule.GrayZone(low: -.infinity, high: .infinity), ExitRule.GrayZone(low: -1, high: 1)])
            .ladder(resolutions: 3) == [2, 3])
        // Stability compares with the resolution before, so it never skips one.
        #expect(ExitRule.stability(margin: [.infinity, 0.2]).ladder(resolutions: 4) == [1, 2, 3, 4])
        // `none` decides nowhere before R but walks every resolution; `final` is R alone.
        #expect(try ExitRule(parsing: "none").ladder(resolutions: 5) == [1, 2, 3, 4, 5])
        #expect(try ExitRule(parsing: "final").ladder(resolutions: 5) == [5])
        #expect(ExitRule.entropy([-.infinity]).ladder(resolutions: 3) == [3])
        #expect(ExitRule.margin([.infinity, 2]).nextResolution(after: 0, resolutions: 4) == 2)
        #expect(ExitRule.margin([.infinity, 2]).nextResolution(after: 4, resolutions: 4) == nil)
    }

    @Test func theRunnerEvaluatesOnlyTheLadder() {
        let data = SyntheticLogits(samples: 200, resolutions: 6, classes: 4, seed: 21)
        let rule = ExitRule.margin([.infinity, .infinity, 1.0, .infinity, 0.5])
        var calls: [Int] = []
        let run = AdaptiveRunner(rule: rule, resolutions: 6).run(sampleCount: 200) { samples, r in
            calls.append(r)
            return samples.map { data.logits[r - 1][$0] }
        }
        #expect(Set(calls).isSubset(of: [3, 5, 6]) && calls.first == 3)
        #expect(run.evaluatedCounts[0] == 0 && run.evaluatedCounts[1] == 0 && run.evaluatedCounts[3] == 0)
        #expect(run.evaluatedCounts[2] == 200)
        #expect(Set(run.exitResolution).isSubset(of: [3, 5, 6]))
        #expect((0..<200).allSatisfy { run.exitLogits[$0] == data.logits[run.exitResolution[$0] - 1][$0] })
        // Each sample cost the ladder's resolutions up to its exit, no more.
        let cost = run.exitResolution.map { exit in [3, 5, 6].count { $0 <= exit } }
        #expect(run.evaluatedPairs == cost.reduce(0, +))
    }

    @Test func directAndIncrementalRunsAgreeAcrossSkippedResolutions() throws {
        var g = SplitMix64(seed: 7)
        let (_, _, samples, net) = try RefinementFixture.splitMLP([12, 10, 8, 3], resolutions: 5, samples: 30, using: &g)
        let inputs = try samples.map { try net.quantize(input: $0) }
        let full = try AdaptiveRunner.allResolutions(net, inputs: inputs)
        // r = 1, 2 and 4 skipped: the incremental evaluator upgrades 0 → 3 and 3 → 5 in one call each.
        let runner = AdaptiveRunner(rule: .margin([.infinity, .infinity, 0.05, .infinity]), resolutions: 5)
        let direct = try runner.run(net, inputs: inputs, evaluation: .direct, sliceSize: 4)
        #expect(try runner.run(net, inputs: inputs, evaluation: .incremental, sliceSize: 4) == direct)
        #expect(direct.evaluatedCounts[0] == 0 && direct.evaluatedCounts[2] == 30)
        for i in inputs.indices { #expect(direct.exitLogits[i] == full[direct.exitResolution[i] - 1][i]) }
    }

    @Test func theAggregatorAsksOnlyForLadderResolutions() throws {
        func logits(_ label: Int, margin m: Double) -> [Double] { (0..<3).map { $0 == label ? m : 0 } }
        var agg = InferenceAggregation(job: "j", sampleCount: 3, resolutions: 4, rule: .margin([.infinity, 1, .infinity]),
                                       deadline: Deadline(epochMs: 0))
        #expect(agg.initialAction == .evaluate(resolution: 2, samples: [0, 1, 2]))
        let a2 = try agg.receive(resolution: 2, indices: [0, 1, 2], logits: [logits(0, margin: 2), logits(1, margin: 0.5), logits(2, margin: 0.1)])
        #expect(a2 == [.refined(samples: [0, 1, 2]), .evaluate(resolution: 4, samples: [1, 2])])
        // Sample 0 cost one resolution of four.
        #expect(agg.skipped == 3)
        // An answer at a resolution nobody was asked for changes nothing.
        #expect(try agg.receive(resolution: 3, indices: [1], logits: [logits(1, margin: 5)]).isEmpty)
        let a4 = try agg.receive(resolution: 4, indices: [1, 2], logits: [logits(1, margin: 3), logits(0, margin: 0.2)])
        #expect(a4 == [.refined(samples: [1, 2]), .finish(.complete)])
        #expect(agg.skipped == 3 + 2 + 2)
        #expect(agg.samples.map(\.resolution) == [2, 4, 4])
    }

    @Test func anOldProducersResolutionOneStillStartsTheJob() throws {
        // Producers before the ladder published resolution 1 whatever the rule.
        var agg = InferenceAggregation(job: "j", sampleCount: 2, resolutions: 4, rule: .margin([.infinity, 1, .infinity]),
                                       deadline: Deadline(epochMs: 0))
        let a1 = try agg.receive(resolution: 1, indices: [0, 1], logits: [[5, 0, 0], [0, 0.2, 0]])
        // Resolution 1 cannot decide under this rule: both go on to 2, the ladder's next.
        #expect(a1 == [.refined(samples: [0, 1]), .evaluate(resolution: 2, samples: [0, 1])])
        // Answered once: a second resolution-1 answer for them changes nothing.
        #expect(try agg.receive(resolution: 1, indices: [0], logits: [[0, 9, 0]]).isEmpty)
        #expect(agg.samples.map(\.resolution) == [1, 1])
    }

    @Test func calibrationSkipsAResolutionThatDecidesTooFewToPayForItself() throws {
        // 200 samples, R = 3. At r = 1 only samples 0…4 are confident (and right); everyone
        // else is a coin toss with margin 0.1. At r = 2 and 3 everyone is right, with margins
        // 2, 2.25, 2.5, 2.75 (the lowest can never pass: thresholds sit between scores).
        let n = 200, labels = (0..<n).map { $0 % 3 }
        func logits(_ label: Int, _ m: Double) -> [Double] { (0..<3).map { $0 == label ? m : 0 } }
        let r1 = (0..<n).map { $0 < 5 ? logits(labels[$0], 4) : logits(($0 * 7) % 3, 0.1) }
        let r2 = (0..<n).map { logits(labels[$0], 2 + Double($0 % 4) / 4) }
        // R costs three times a lower resolution (a wider weight, say).
        let cal = try ExitCalibration.calibrate(.margin, logits: [r1, r2, r2], labels: labels, maxLoss: 0, costs: [1, 1, 3])
        // Exiting 5 samples at r = 1 would cost 200 evaluations there to save about 5 later;
        // skipping r = 1: 150 exit at r = 2, the 50 with margin 2 go on to r = 3.
        #expect(cal.thresholds[0] == .infinity)
        #expect(cal.rule.ladder(resolutions: 3) == [2, 3])
        #expect(cal.exitCounts == [0, 150, 50])
        #expect(cal.skippedPairs == 3 * n - (n + 50), "r = 1 never evaluated, r = 3 only for 50")
        #expect(abs(cal.costShare - Double(n + 50 * 3) / Double(5 * n)) < 1e-12)
        // When every resolution costs the same, R alone (one pass each) is cheaper still: no
        // ladder below R can cost less than one resolution per sample.
        let uniform = try ExitCalibration.calibrate(.margin, logits: [r1, r2, r2], labels: labels, maxLoss: 0, costs: [1, 1, 1])
        #expect(uniform.rule.ladder(resolutions: 3) == [3])
        #expect(uniform.exitCounts == [0, 0, n] && uniform.skippedPairs == 2 * n)
        #expect(cal.adaptiveCorrect == cal.referenceCorrect)
    }
}
