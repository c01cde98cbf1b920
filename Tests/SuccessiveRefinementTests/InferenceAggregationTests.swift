// The inference aggregator's state machine: frozen samples are never requested again, every
// sample has an answer at the deadline, duplicates change nothing.
import Testing
@testable import SRAggregation
@testable import SRCore
@testable import SRProtocol

@Suite struct InferenceAggregationTests {
    /// Logits whose margin is `m` with the top class `label`.
    func logits(_ label: Int, margin m: Double, classes: Int = 3) -> [Double] {
        (0..<classes).map { $0 == label ? m : 0 }
    }

    @Test func decidedSamplesAreNeverRequestedAgain() throws {
        var agg = InferenceAggregation(job: "j", sampleCount: 4, resolutions: 3, rule: .margin([0.5]), deadline: Deadline(epochMs: 0))
        #expect(agg.initialAction == .evaluate(resolution: 1, samples: [0, 1, 2, 3]))
        // Samples 0 and 2 are confident at r = 1; 1 and 3 are not.
        let a1 = try agg.receive(resolution: 1, indices: [0, 1, 2, 3],
                                 logits: [logits(0, margin: 2), logits(1, margin: 0.1), logits(2, margin: 0.9), logits(0, margin: 0.2)])
        #expect(a1 == [.refined(samples: [0, 1, 2, 3]), .evaluate(resolution: 2, samples: [1, 3])])
        #expect(agg.skipped == 4)   // samples 0 and 2 skip r = 2 and 3
        let a2 = try agg.receive(resolution: 2, indices: [1, 3], logits: [logits(1, margin: 3), logits(2, margin: 0.3)])
        #expect(a2 == [.refined(samples: [1, 3]), .evaluate(resolution: 3, samples: [3])])
        // Resolution R decides whatever is left, and the job completes.
        let a3 = try agg.receive(resolution: 3, indices: [3], logits: [logits(2, margin: 0.4)])
        #expect(a3 == [.refined(samples: [3]), .finish(.complete)])
        #expect(agg.samples.map(\.label) == [0, 1, 2, 2])
        #expect(agg.samples.map(\.resolution) == [1, 2, 1, 3])
        #expect(agg.deadlineFired(nowMs: 1).isEmpty)
    }

    @Test func theDeadlineAnswersEverySampleOnceWithItsBestResolution() throws {
        var agg = InferenceAggregation(job: "j", sampleCount: 3, resolutions: 4, rule: .margin([10]), deadline: Deadline(epochMs: 100))
        _ = try agg.receive(resolution: 1, indices: [0, 1], logits: [logits(1, margin: 1), logits(2, margin: 2)])
        _ = try agg.receive(resolution: 2, indices: [0], logits: [logits(0, margin: 3)])
        #expect(agg.deadlineFired(nowMs: 101) == [.finish(.deadline)])
        #expect(agg.deadlineFired(nowMs: 102).isEmpty)
        #expect(agg.samples.map(\.resolution) == [2, 1, 0])
        #expect(agg.samples.map(\.label) == [0, 2, -1])
        #expect(agg.samples[0].margin == 3)
        // Late answers change nothing.
        #expect(try agg.receive(resolution: 1, indices: [2], logits: [logits(1, margin: 1)]).isEmpty)
    }

    @Test func duplicatesAndUnrequestedAnswersAreIgnoredAndBadOnesRefused() throws {
        var agg = InferenceAggregation(job: "j", sampleCount: 2, resolutions: 2, rule: .margin([0.5]), deadline: Deadline(epochMs: 0))
        _ = try agg.receive(resolution: 1, indices: [0], logits: [logits(0, margin: 0.1)])
        #expect(try agg.receive(resolution: 1, indices: [0], logits: [logits(1, margin: 5)]).isEmpty)   // duplicate
        #expect(try agg.receive(resolution: 2, indices: [1], logits: [logits(1, margin: 5)]).isEmpty)   // not asked yet
        #expect(agg.samples[0].label == 0)
        #expect(throws: WireError.self) { try agg.receive(resolution: 1, indices: [1], logits: [[.nan, 0, 0]]) }
        #expect(throws: WireError.self) { try agg.receive(resolution: 9, indices: [1], logits: [logits(0, margin: 1)]) }
        // A refused answer leaves the sample outstanding: a good one is still taken.
        #expect(try agg.receive(resolution: 1, indices: [1], logits: [logits(1, margin: 2)]).contains(.refined(samples: [1])))
    }
}
