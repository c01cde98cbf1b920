// The textual form of an exit rule, as given on the command line and carried in an inference
// job's open record: `FAMILY:t1,t2,…` (one threshold per resolution, the last repeating), or
// `none` (every sample refines to R).

extension ExitRule {
    /// Parses `margin:0.27,0.65`, `entropy:1.2`, `stability:0,0.01`, `gray-zone:0.3-0.6` (sigmoid
    /// probabilities, one low-high pair per resolution) or `none`. Thresholds may be `inf`.
    public init(parsing text: String) throws(EarlyExitError) {
        let trimmed = String(text.filter { $0 != " " })
        if trimmed == "none" {
            self = .margin([.infinity])
            return
        }
        let parts = trimmed.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[1].isEmpty else {
            throw EarlyExitError(.invalidInput,
                "exit rule '\(text)' needs thresholds: write FAMILY:t1,t2,… (e.g. margin:0.3,0.6), or none")
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
        case "gray-zone":
            var zones: [GrayZone] = []
            for f in fields {
                let ends = f.split(separator: "-").compactMap { Double($0) }
                guard ends.count == 2, (0...1).contains(ends[0]), (0...1).contains(ends[1]), ends[0] <= ends[1] else {
                    throw EarlyExitError(.invalidInput,
                        "exit rule '\(text)': '\(f)' must be LOW-HIGH sigmoid probabilities in [0, 1], e.g. 0.3-0.6")
                }
                zones.append(GrayZone(probabilities: ends[0]...ends[1]))
            }
            self = .grayZone(zones)
        default:
            throw EarlyExitError(.invalidInput,
                "unknown exit rule family '\(parts[0])' in '\(text)': use margin, entropy, stability, gray-zone or none")
        }
    }

    /// The text `init(parsing:)` reads back to this rule (thresholds printed exactly; gray zones
    /// as probabilities, which read back to within rounding).
    public var text: String {
        func list(_ v: [Double]) -> String { v.map { $0 == .infinity ? "inf" : $0 == -.infinity ? "-inf" : "\($0)" }.joined(separator: ",") }
        switch self {
        case .margin(let t): return t == [.infinity] ? "none" : "margin:\(list(t))"
        case .entropy(let t): return "entropy:\(list(t))"
        case .stability(let t): return "stability:\(list(t))"
        case .grayZone(let z):
            return "gray-zone:" + z.map { "\($0.probabilities.lowerBound)-\($0.probabilities.upperBound)" }.joined(separator: ",")
        }
    }
}
