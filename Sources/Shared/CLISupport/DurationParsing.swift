// Human durations on the command line: "1500ms", "1.5s", "2min", "1h", "250us".

public enum DurationParsing {
    /// Unit suffixes, longest first where one ends another ("ms" before "s").
    static let units: [(suffix: String, seconds: Double)] = [
        ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("min", 60), ("m", 60), ("h", 3600),
    ]

    /// Parses a positive duration with a unit (us, ms, s, min or m, h); nil if it is not one.
    public static func parse(_ text: String) -> Duration? {
        try? parseOrExplain(text)
    }

    /// Parses a positive duration with a unit, or throws a message that says what is wrong. A
    /// bare number is an error: units are never guessed.
    public static func parseOrExplain(_ text: String) throws(DurationError) -> Duration {
        let example = "e.g. 500ms, 1.5s, 2min or 1h (units: us, ms, s, min, h)"
        guard let unit = units.first(where: { text.hasSuffix($0.suffix) }) else {
            throw DurationError(Double(text) != nil
                ? "'\(text)' has no unit; write it with one, \(example)"
                : "'\(text)' is not a duration; \(example)")
        }
        guard let v = Double(text.dropLast(unit.suffix.count)), v.isFinite else {
            throw DurationError("'\(text)' is not a duration; \(example)")
        }
        guard v > 0 else { throw DurationError("'\(text)' is not positive; a duration here must be > 0, \(example)") }
        let nanos = (v * unit.seconds * 1e9).rounded()
        guard nanos >= 1 else { throw DurationError("'\(text)' is shorter than a nanosecond") }
        guard nanos < 1e18 else { throw DurationError("'\(text)' is too long (more than 31 years)") }
        return .nanoseconds(Int64(nanos))
    }
}

/// Why a command-line duration was refused.
public struct DurationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
