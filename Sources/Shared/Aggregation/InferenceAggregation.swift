// The aggregator's per-job logic for distributed inference, as a pure state machine (no I/O,
// time passed in): per-sample logits in, exit decisions, next-resolution work and the deadline
// answer out. AggregatorService turns its actions into tasks and outputs.
import SRCore
import SRProtocol

/// One inference job over `sampleCount` samples and R resolutions. After a block of samples
/// arrives at resolution r, each sample is decided by the exit rule (or by reaching R); only
/// the undecided ones are asked for at the next resolution of the rule's ladder (r + 1 unless
/// the rule can decide nothing there) — frozen samples cost nothing more. At the
/// deadline every sample has an answer: its label at the best resolution it reached.
public struct InferenceAggregation: Sendable {
    /// What the caller must do after an input.
    public enum Action: Sendable, Equatable {
        /// Request resolution `resolution` for these samples (publish their tasks).
        case evaluate(resolution: Int, samples: [Int])
        /// These samples changed (new resolution or decided): publish a refinement.
        case refined(samples: [Int])
        /// Every sample is decided (status complete) or the deadline fired (status deadline):
        /// publish the final answer and close the job.
        case finish(OutputStatus)
    }

    /// Where one sample stands.
    public struct Sample: Sendable, Equatable {
        /// Logits at `resolution` (empty before the first one arrives).
        public var logits: [Double] = []
        /// The best resolution reached so far (0 = none yet).
        public var resolution = 0
        /// True once the exit rule (or resolution R) froze it.
        public var decided = false
        /// The predicted class, as the exit rules see it (-1 before any logits).
        public var label: Int { logits.isEmpty ? -1 : ExitRule.predictedClass(logits) }
        /// top-1 minus top-2 logit, |z| for a single logit (0 before any).
        public var margin: Double { logits.isEmpty ? 0 : ExitRule.logitMargin(logits) }
    }

    public let job: String
    public let resolutions: Int
    public let rule: ExitRule
    public let deadline: Deadline
    public private(set) var samples: [Sample]
    /// Samples asked for at each resolution and not answered yet.
    var outstanding: [Int: Set<Int>] = [:]
    public private(set) var closedWith: OutputStatus?
    /// (sample, resolution) pairs that were never requested because the sample was decided
    /// or the rule skips the resolution.
    public private(set) var skipped = 0
    /// The resolutions samples go through (`ExitRule.ladder`).
    let ladder: [Int]

    /// A new job; its first action: evaluate every sample at the ladder's first resolution.
    public init(job: String, sampleCount: Int, resolutions: Int, rule: ExitRule, deadline: Deadline) {
        precondition(sampleCount >= 1 && resolutions >= 1)
        self.job = job
        self.resolutions = resolutions
        self.rule = rule
        self.deadline = deadline
        self.samples = Array(repeating: Sample(), count: sampleCount)
        self.ladder = rule.ladder(resolutions: resolutions)
        self.firstResolution = ladder[0]
        self.outstanding[firstResolution] = Set(0..<sampleCount)
    }

    /// The first resolution the rule evaluates (`ExitRule.ladder`: 1 unless the rule can decide
    /// nothing there); the producer publishes its tasks.
    public let firstResolution: Int

    /// The request that starts the job.
    public var initialAction: Action { .evaluate(resolution: firstResolution, samples: Array(0..<samples.count)) }

    public var isClosed: Bool { closedWith != nil }

    /// Logits for `indices` at `resolution` (one row per index). Duplicates and answers for
    /// samples not asked at that resolution are ignored (at-least-once delivery).
    public mutating func receive(resolution r: Int, indices: [Int], logits: [[Double]]) throws(WireError) -> [Action] {
        guard !isClosed else { return [] }
        guard indices.count == logits.count, (1...resolutions).contains(r) else {
            throw WireError("job \(job): \(indices.count) indices with \(logits.count) logit rows at resolution \(r) of \(resolutions)")
        }
        var changed: [Int] = [], next: [Int] = []
        for (i, s) in indices.enumerated() {
            guard logits[i].allSatisfy(\.isFinite), !logits[i].isEmpty else {
                throw WireError("job \(job): sample \(s) has non-finite or empty logits")
            }
            guard samples.indices.contains(s) else { continue }
            if outstanding[r]?.remove(s) == nil {
                // A producer from before the exit ladder publishes resolution 1 whatever the
                // rule: take a first answer below the ladder's first resolution as the sample's
                // start (the rule then asks for the ladder's next resolution).
                guard r < firstResolution, samples[s].resolution == 0,
                      outstanding[firstResolution]?.remove(s) != nil else { continue }
            }
            let previous = samples[s].logits.isEmpty ? nil : samples[s].logits
            samples[s].logits = logits[i]
            samples[s].resolution = r
            if r == resolutions || rule.decides(logits[i], previous: previous, resolution: r) {
                samples[s].decided = true
                skipped += resolutions - ladder.count { $0 <= r }
            } else {
                next.append(s)
            }
            changed.append(s)
        }
        var actions: [Action] = []
        if !changed.isEmpty { actions.append(.refined(samples: changed)) }
        if !next.isEmpty, let up = ladder.first(where: { $0 > r }) {
            outstanding[up, default: []].formUnion(next)
            actions.append(.evaluate(resolution: up, samples: next))
        }
        if samples.allSatisfy(\.decided) {
            closedWith = .complete
            actions.append(.finish(.complete))
        }
        return actions
    }

    /// The deadline fired: finish with every sample's best answer so far, exactly once.
    public mutating func deadlineFired(nowMs: Int64) -> [Action] {
        guard !isClosed else { return [] }
        closedWith = .deadline
        return [.finish(.deadline)]
    }
}
