// When a sample may stop refining (METHOD.md §6): decisions on its exact logits at resolution r,
// with thresholds that may differ per resolution, and the confidence scores calibration searches.
import Foundation

/// A rule that decides, after resolution r, whether a sample's prediction is final ("frozen")
/// or whether it stays in the gray zone and gets resolution r + 1. At the final resolution R
/// every sample is decided whatever the rule says; the runner, not the rule, enforces that.
///
/// Thresholds are per resolution: resolution r uses element `min(r, count) − 1`, so a
/// one-element array is one threshold for every resolution (the reference rules).
/// A network with a single logit z (sigmoid head) is read as the two classes (0, z), so that
/// margin, entropy and stability apply to it too; `grayZone` applies only to it.
public enum ExitRule: Sendable, Equatable, CustomStringConvertible {
    /// Decided when top-1 minus top-2 logit ≥ threshold_r.
    case margin([Double])
    /// Decided when the softmax entropy (nats) ≤ threshold_r.
    case entropy([Double])
    /// Decided when the predicted class is the same at r − 1 and r and the margin at r is
    /// ≥ threshold_r (0: stability alone). Never decided at r = 1: nothing to compare with.
    case stability(margin: [Double])
    /// Binary nets: decided when the logit is outside the gray zone [low, high]_r.
    case grayZone([GrayZone])

    /// A closed interval of logits that stays undecided; built from sigmoid probabilities
    /// because that is how the reference states it, kept in logits because σ saturates to 1
    /// in Double above z ≈ 37, where probabilities could no longer tell samples apart.
    public struct GrayZone: Sendable, Equatable {
        public var low: Double
        public var high: Double

        public init(low: Double, high: Double) {
            precondition(!(low > high), "a gray zone needs low ≤ high, got [\(low), \(high)]")
            self.low = low
            self.high = high
        }

        /// The zone of logits whose sigmoid lies in `probabilities`, e.g. 0.3...0.6.
        public init(probabilities p: ClosedRange<Double>) {
            precondition(p.lowerBound >= 0 && p.upperBound <= 1, "gray-zone probabilities must lie in [0, 1]")
            self.init(low: ExitRule.logit(p.lowerBound), high: ExitRule.logit(p.upperBound))
        }

        /// The zone as sigmoid probabilities.
        public var probabilities: ClosedRange<Double> { ExitRule.sigmoid(low)...ExitRule.sigmoid(high) }
    }

    /// The reference CIFAR rule: top-1 minus top-2 logit ≤ 0.05 stays gray, at every resolution.
    public static let referenceMargin = ExitRule.margin([0.05])
    /// The reference binary-MNIST rule: sigmoid score in [0.3, 0.6] stays gray.
    public static let referenceGrayZone = ExitRule.grayZone([GrayZone(probabilities: 0.3...0.6)])

    /// Whether a sample with `logits` at resolution `r` (1…R) is decided. `previous` are its
    /// logits at r − 1 (nil at r = 1); only `stability` reads them. O(classes).
    public func decides(_ logits: [Double], previous: [Double]?, resolution r: Int) -> Bool {
        precondition(r >= 1, "resolutions start at 1")
        switch self {
        case .margin(let t):
            return Self.logitMargin(logits) >= Self.pick(t, r)
        case .entropy(let t):
            return Self.softmaxEntropy(logits) <= Self.pick(t, r)
        case .stability(let t):
            guard let previous, Self.predictedClass(previous) == Self.predictedClass(logits) else { return false }
            return Self.logitMargin(logits) >= Self.pick(t, r)
        case .grayZone(let zones):
            precondition(logits.count == 1, "a gray-zone rule needs a single logit (sigmoid head), got \(logits.count)")
            let zone = Self.pick(zones, r)
            return logits[0] < zone.low || logits[0] > zone.high
        }
    }

    /// Whether the rule can judge a network with `outputs` logits; nil if so, else why not.
    public func mismatch(outputs: Int) -> String? {
        if outputs < 1 { return "the network has no outputs" }
        let empty: Bool
        switch self {
        case .margin(let t), .entropy(let t), .stability(let t): empty = t.isEmpty
        case .grayZone(let z):
            if outputs != 1 {
                return "a gray-zone rule needs a single logit (sigmoid head); this network has \(outputs) — use margin, entropy or stability"
            }
            empty = z.isEmpty
        }
        return empty ? "the rule \(self) has no thresholds; give at least one (it then holds at every resolution)" : nil
    }

    /// The rule family, for calibration.
    public var family: Family {
        switch self {
        case .margin: .margin
        case .entropy: .entropy
        case .stability: .stability
        case .grayZone: .grayZone
        }
    }

    public var description: String {
        func list(_ v: [Double]) -> String { v.map { Self.format($0) }.joined(separator: ", ") }
        switch self {
        case .margin(let t) where t == [.infinity]: return "final (resolution R alone)"
        case .stability(let t) where t == [.infinity]: return "none (every resolution, no exit)"
        case .margin(let t): return "margin ≥ [\(list(t))]"
        case .entropy(let t): return "entropy ≤ [\(list(t))]"
        case .stability(let t): return "stable argmax and margin ≥ [\(list(t))]"
        case .grayZone(let z):
            return "sigmoid outside [" + z.map { "\(Self.format($0.probabilities.lowerBound))…\(Self.format($0.probabilities.upperBound))" }
                .joined(separator: ", ") + "]"
        }
    }

    // MARK: Families and scores

    /// A kind of rule with its thresholds left open. Each family maps a sample to a confidence
    /// score; the rule with thresholds τ_r decides exactly the samples whose score passes τ_r
    /// (`passes`), so calibration can search thresholds on scores computed once.
    public enum Family: String, Sendable, CaseIterable {
        case margin, entropy, stability, grayZone

        /// Larger is more confident: the margin, −entropy, the margin if the class is stable
        /// (else −∞), |z| for a single logit.
        public func score(_ logits: [Double], previous: [Double]?) -> Double {
            switch self {
            case .margin: return ExitRule.logitMargin(logits)
            case .entropy: return -ExitRule.softmaxEntropy(logits)
            case .stability:
                guard let previous, ExitRule.predictedClass(previous) == ExitRule.predictedClass(logits) else {
                    return -.infinity
                }
                return ExitRule.logitMargin(logits)
            case .grayZone:
                precondition(logits.count == 1, "a gray-zone rule needs a single logit (sigmoid head), got \(logits.count)")
                return abs(logits[0])
            }
        }

        /// Whether `score` is decided at threshold τ — the same comparison `decides` makes.
        /// The gray zone is closed, so there the score must exceed τ.
        public func passes(_ score: Double, threshold τ: Double) -> Bool {
            self == .grayZone ? score > τ : score >= τ
        }

        /// The rule deciding exactly `passes(score, τ_r)`; τ = +∞ decides nothing at r.
        /// A gray-zone threshold τ ≥ 0 (scores are |z|) becomes the symmetric zone [−τ, τ].
        public func rule(thresholds τ: [Double]) -> ExitRule {
            switch self {
            case .margin: return .margin(τ)
            case .entropy: return .entropy(τ.map { -$0 })   // −H ≥ τ ⇔ H ≤ −τ, negation is exact
            case .stability: return .stability(margin: τ)
            case .grayZone:
                precondition(τ.allSatisfy { $0 >= 0 }, "gray-zone thresholds are |z| ≥ 0, got \(τ)")
                return .grayZone(τ.map { GrayZone(low: -$0, high: $0) })
            }
        }
    }

    // MARK: Logit arithmetic

    /// The class logits: a single logit z is the pair (0, z) of a two-class softmax.
    static func classLogits(_ logits: [Double]) -> [Double] {
        logits.count == 1 ? [0, logits[0]] : logits
    }

    /// The predicted class: the largest logit (the first on ties), or for a single logit 1
    /// when it is positive. O(classes).
    public static func predictedClass(_ logits: [Double]) -> Int {
        if logits.count == 1 { return logits[0] > 0 ? 1 : 0 }
        var best = 0
        for k in logits.indices where logits[k] > logits[best] { best = k }
        return best
    }

    /// Top-1 minus top-2 of the class logits (|z| for a single logit). O(classes).
    public static func logitMargin(_ logits: [Double]) -> Double {
        let l = classLogits(logits)
        var first = -Double.infinity, second = -Double.infinity
        for v in l {
            if v > first { second = first; first = v } else if v > second { second = v }
        }
        return first - second
    }

    /// Softmax entropy of the class logits in nats, computed after subtracting the largest
    /// logit so that no exponential overflows. O(classes).
    public static func softmaxEntropy(_ logits: [Double]) -> Double {
        let l = classLogits(logits)
        let top = l.max() ?? 0
        var sum = 0.0, weighted = 0.0
        for v in l {
            let e = exp(v - top)
            sum += e
            weighted += e * (v - top)
        }
        // H = log Σe − Σ e·(v − top) / Σe.
        return max(0, log(sum) - weighted / sum)
    }

    static func sigmoid(_ z: Double) -> Double { 1 / (1 + exp(-z)) }

    static func logit(_ p: Double) -> Double { log(p / (1 - p)) }

    private static func pick<T>(_ values: [T], _ r: Int) -> T { values[min(r, values.count) - 1] }

    static func format(_ v: Double) -> String {
        if v == .infinity { return "∞" }
        if v == -.infinity { return "−∞" }
        let rounded = (v * 10_000).rounded() / 10_000
        return "\(rounded)"
    }
}

/// An error from calibrating or running early exit; `description` says what to change.
public struct EarlyExitError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable, Equatable {
        /// Logits, labels or a loss bound that do not fit together.
        case invalidInput
        /// A rule that cannot judge this network's outputs (a gray zone on several logits).
        case ruleMismatch
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
