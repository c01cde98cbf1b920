// The textual form of an exit rule, as given on the command line and carried in an inference
// job's open record: `FAMILY:t1,t2,…` (one threshold per resolution, the last repeating),
// `none` (every sample refines through every resolution to R) or `final` (R alone). Gray zones: `gray-zone:0.3/0.6,…` in sigmoid
// probabilities (how people state them), `gray-zone-logits:L/H,…` in logits (exact; what
// `text` writes, because probabilities saturate and would not read back exactly).

extension ExitRule {
    /// Parses `margin:0.27,0.65`, `entropy:1.2`, `stability:0,0.01`, `gray-zone:0.3/0.6` (sigmoid
    /// probabilities, one low/high pair per resolution), `gray-zone-logits:-0.85/0.41`, `none`
    /// (no exit: every resolution in turn, the stability rule with an infinite margin) or
    /// `final` (no exit and no intermediate resolution: R alone, the margin rule with an
    /// infinite threshold). Thresholds may be `inf`.
    public init(parsing text: String) throws(EarlyExitError) {
        let trimmed = String(text.filter { $0 != " " })
        if trimmed == "none" {
            self = .stability(margin: [.infinity])
            return
        }
        if trimmed == "final" {
            self = .margin([.infinity])
            return
        }
        let parts = trimmed.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[1].isEmpty else {
            throw EarlyExitError(.invalidInput,
                "exit rule '\(text)' needs thresholds: write FAMILY:t1,t2,… (e.g. margin:0.3,0.6), none or final")
        }
        let fields = parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        func numbers() throws(EarlyExitError) -> [Double] {
            var out: [Double] = []
            for f in fields {
                guard let v = Double(f), !v.isNaN else {
                    throw EarlyExitError(.invalidInput, "exit rule '\(text)': '\(f)' is not a number")
                }
                out.append(v)
            }
            return out
        }
        switch parts[0] {
        case "margin": self = .margin(try numbers())
        case "entropy": self = .entropy(try numbers())
        case "stability": self = .stability(margin: try numbers())
        case "gray-zone", "gray-zone-logits":
            let logits = parts[0] == "gray-zone-logits"
            var zones: [GrayZone] = []
            for f in fields {
                let ends = f.split(separator: "/", omittingEmptySubsequences: false).map { Double($0) }
                guard ends.count == 2, let low = ends[0], let high = ends[1], !low.isNaN, !high.isNaN, low <= high,
                      logits || ((0...1).contains(low) && (0...1).contains(high)) else {
                    throw EarlyExitError(.invalidInput, logits
                        ? "exit rule '\(text)': '\(f)' must be LOW/HIGH logits with LOW ≤ HIGH, e.g. -0.85/0.41"
                        : "exit rule '\(text)': '\(f)' must be LOW/HIGH sigmoid probabilities in [0, 1], e.g. 0.3/0.6")
                }
                zones.append(logits ? GrayZone(low: low, high: high) : GrayZone(probabilities: low...high))
            }
            self = .grayZone(zones)
        default:
            throw EarlyExitError(.invalidInput,
                "unknown exit rule family '\(parts[0])' in '\(text)': use margin, entropy, stability, gray-zone, gray-zone-logits, none or final")
        }
    }

    /// The text `init(parsing:)` reads back to exactly this rule.
    public var text: String {
        func list(_ v: [Double]) -> String { v.map { $0 == .infinity ? "inf" : $0 == -.infinity ? "-inf" : "\($0)" }.joined(separator: ",") }
        switch self {
        case .margin(let t): return t == [.infinity] ? "final" : "margin:\(list(t))"
        case .entropy(let t): return "entropy:\(list(t))"
        case .stability(let t): return t == [.infinity] ? "none" : "stability:\(list(t))"
        case .grayZone(let z):
            return "gray-zone-logits:" + z.map { list([$0.low]) + "/" + list([$0.high]) }.joined(separator: ",")
        }
    }
}
