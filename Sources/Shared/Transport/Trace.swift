// A per-hop timeline for diagnosing latency: with SR_TRACE set, roles print
// `TRACE <µs since the epoch> <job> <event>` lines to stderr at each hop (plan, publish, task
// received, kernel, partial, aggregation, output received). The machines' clocks must agree
// (one machine, or NTP); Benchmarks/hop-timeline.sh collects and tabulates them.
import Foundation

public enum Trace {
    /// The header whose value names the job in a transport's trace lines.
    public static let jobHeader = "sr-job"
    /// Read once: tracing is a process-wide diagnostic switch, off unless SR_TRACE is set.
    package static let enabled = ProcessInfo.processInfo.environment["SR_TRACE"] != nil

    public static func mark(_ job: String, _ event: @autoclosure () -> String) {
        guard enabled else { return }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let us = Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
        FileHandle.standardError.write(Data("TRACE \(us) \(job) \(event())\n".utf8))
    }
}
