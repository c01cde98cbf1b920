// Wall-clock milliseconds since the Unix epoch: deadlines cross machines, so they are absolute.
import Foundation

public enum WallClock {
    /// `d` in (fractional) milliseconds, as deadlines travel.
    public static func milliseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) * 1e-15
    }

    @Sendable public static func nowMs() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}
