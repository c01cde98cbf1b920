// Label values the roles share, kept few: Prometheus keeps one series per label set, so a label
// fed from a message (a layer index) is capped before it becomes one.

/// Label values of the `sr_` metrics (docs/OPERATIONS.md lists the metrics).
public enum MetricLabels {
    /// Layers (0-based) and resolutions (1-based) above this share the label "16+".
    public static let maxDistinct = 16

    /// `layer` as a label: "0" … "15", then "16+" (a significance schedule of m chunks has
    /// 2m − 1 layers; more than 16 is rare and needs no series of its own).
    public static func layer(_ layer: Int) -> String {
        layer < 0 ? "0" : layer < maxDistinct ? String(layer) : "\(maxDistinct)+"
    }

    /// A 1-based resolution as a label: "1" … "16", then "17+".
    public static func resolution(_ resolution: Int) -> String {
        resolution <= maxDistinct ? String(max(0, resolution)) : "\(maxDistinct + 1)+"
    }

    /// `d` in whole nanoseconds (what swift-metrics timers take), saturating.
    public static func nanoseconds(_ d: Duration) -> Int64 {
        let (seconds, attoseconds) = d.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return scaled.addingReportingOverflow(attoseconds / 1_000_000_000).overflow ? .max : scaled + attoseconds / 1_000_000_000
    }
}
