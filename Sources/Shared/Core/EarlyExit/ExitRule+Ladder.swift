// Which resolutions an adaptive run evaluates under a rule. A resolution at which the rule can
// decide nothing cannot end any sample's refinement: evaluating it buys only a provisional
// answer, at the price of a whole resolution for every sample still active. Runners skip it.

extension ExitRule {
    /// Whether the rule can decide any sample at resolution r < R: false where its threshold
    /// is +∞ (margin), −∞ (entropy) or the gray zone is the whole line. Stability compares
    /// with the previous resolution's class, so for it every resolution counts.
    public func canDecide(atResolution r: Int) -> Bool {
        precondition(r >= 1, "resolutions start at 1")
        switch self {
        case .margin(let t): return t[min(r, t.count) - 1] < .infinity
        case .entropy(let t): return t[min(r, t.count) - 1] > -.infinity
        case .stability: return true
        case .grayZone(let z):
            let zone = z[min(r, z.count) - 1]
            return zone.low > -.infinity || zone.high < .infinity
        }
    }

    /// The resolutions a sample goes through, in order, out of 1…R: every r < R at which the
    /// rule can decide, then R. A margin rule that decides nowhere before R (`final`) is R
    /// alone, one pass; `none` (stability that never decides) walks every resolution, so a
    /// deadline returns the best one reached. O(R).
    public func ladder(resolutions: Int) -> [Int] {
        precondition(resolutions >= 1, "a network has at least one resolution")
        return (1..<resolutions).filter { canDecide(atResolution: $0) } + [resolutions]
    }

    /// The first resolution of the ladder after r (nil after R).
    public func nextResolution(after r: Int, resolutions: Int) -> Int? {
        ladder(resolutions: resolutions).first { $0 > r }
    }
}
