// Human durations on the command line: "1500ms", "1.5s", "2m", "250us".

public enum DurationParsing {
    /// Parses a positive duration with a unit (us, ms, s, m). A bare number is an error: units
    /// are never guessed.
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let v = Double(text.dropLast(suffix.count)), v.isFinite, v > 0 else { return nil }
            let nanos = (v * scale * 1e9).rounded()
            guard nanos >= 1, nanos < 1e18 else { return nil }
            return .nanoseconds(Int64(nanos))
        }
        return nil
    }

    public static func milliseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) * 1e-15
    }
}
