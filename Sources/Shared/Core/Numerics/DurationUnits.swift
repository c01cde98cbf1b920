// The one conversion from `Duration` to the numbers that travel: deadlines and timings go on
// the wire and into logs as milliseconds (or microseconds), never as Duration's components.

extension Duration {
    /// Seconds with their fraction (benchmarks' timings).
    @inlinable public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// Milliseconds with their fraction (1.5 for 1500 µs).
    /// (Divided by an exactly representable power of ten: correctly rounded, so 1500 µs is 1.5.)
    @inlinable public var milliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }

    /// Whole milliseconds, rounded toward zero.
    @inlinable public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    /// Whole milliseconds, rounded up, at least 0: a broker TTL is never shortened (and AMQP
    /// knows no negative ones).
    @inlinable public var millisecondsRoundedUp: Int64 {
        let (s, atto) = components
        guard s >= 0, !(s == 0 && atto <= 0) else { return 0 }
        let perMs: Int64 = 1_000_000_000_000_000
        return s * 1000 + atto / perMs + (atto % perMs > 0 ? 1 : 0)
    }

    /// Whole microseconds, rounded toward zero.
    @inlinable public var wholeMicroseconds: Int64 {
        components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000
    }
}
