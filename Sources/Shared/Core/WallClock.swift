// Wall-clock milliseconds since the Unix epoch: deadlines cross machines, so they are absolute.
import Foundation

public enum WallClock {
    @Sendable public static func nowMs() -> Int64 {
        Int64((Date().timeIntervalSince1970 * 1000).rounded(.down))
    }
}
