// The one conversion from `Duration` to the numbers that travel: deadlines and timings go on
// the wire and into logs as milliseconds (or microseconds), never as Duration's components.

extension Duration {
    /// Milliseconds with their fraction (1.5 for 1500 µs).
    @inlinable public var milliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) * 1e-15
    }

    /// Whole milliseconds, rounded toward zero.
    @inlinable public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    /// Whole microseconds, rounded toward zero.
    @inlinable public var wholeMicroseconds: Int64 {
        components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000
    }
}
