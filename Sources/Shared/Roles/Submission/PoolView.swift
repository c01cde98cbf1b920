// What `srproduce top` shows an operator: the open jobs (resolution reached, time left, bound), the
// latest finals and the pool's totals, fed by the aggregator's open notices and outputs and by
// scraped metrics. A value with no I/O and no clock (callers pass the time), rendered as text.
import SRCore
import SRProtocol
import SRTransport

public struct PoolView: Sendable {
    /// A job opened and not answered yet.
    public struct OpenJob: Sendable, Equatable {
        public var id: String
        /// The resolution reached (0: none yet).
        public var resolution: Int
        /// Resolutions in all (R).
        public var of: Int
        /// Absolute deadline (ms since the epoch); nil when only outputs were seen (`top` started
        /// after the job opened).
        public var deadline: Deadline?
        /// The latest resolution's max error bound (mat-vec).
        public var bound: Double?
        /// When this view last heard of the job (ms since the epoch, this machine's clock).
        public var heardMs: Int64
    }

    /// A job's final output.
    public struct Final: Sendable, Equatable {
        public var id: String
        public var status: OutputStatus
        public var resolution: Int
        public var of: Int
        /// Since the job's creation.
        public var elapsedMs: Double
        /// For deadline finals: how late the deadline fired.
        public var lateMs: Double?
        public var bound: Double?
        public var reason: String?
        public var heardMs: Int64
    }

    /// What a message changed, for the plain (one line per event) display.
    public enum Event: Sendable, Equatable {
        case opened(OpenJob)
        case refined(OpenJob)
        case final(Final)
    }

    public struct Totals: Sendable, Equatable {
        public var opened = 0, refinements = 0, complete = 0, deadline = 0, nothingByDeadline = 0, failed = 0
    }

    public private(set) var open: [String: OpenJob] = [:]
    /// Newest last, at most `recentLimit`.
    public private(set) var finals: [Final] = []
    public private(set) var totals = Totals()
    public var recentLimit: Int
    /// The latest scrape of the pool's metrics, if any.
    public var metrics: PoolMetrics?

    public init(recentLimit: Int = 8) {
        self.recentLimit = recentLimit
    }

    /// Takes one message from sr.outputs (an open notice, a mat-vec or an inference output; only
    /// headers are read); nil for anything else or a repeat (outputs are at-least-once).
    public mutating func take(_ message: Message, nowMs: Int64) -> Event? {
        let h = message.headers
        guard let kind = h[Header.kind]?.stringValue, let id = h[Header.job]?.stringValue else { return nil }
        if kind == OpenedNotice.kind {
            guard let notice = try? OpenedNotice(decoding: message) else { return nil }
            if var job = open[id] {   // an output overtook its notice
                job.deadline = notice.deadline
                open[id] = job
                return nil
            }
            guard !finals.contains(where: { $0.id == id }) else { return nil }
            let job = OpenJob(id: id, resolution: 0, of: notice.of, deadline: notice.deadline, bound: nil, heardMs: nowMs)
            open[id] = job
            totals.opened += 1
            return .opened(job)
        }
        guard kind == OutputMessage.kind || kind == InferenceOutput.kind,
              let statusText = h[Header.status]?.stringValue, let status = OutputStatus(rawValue: statusText) else { return nil }
        let resolution = Int(h[Header.resolution]?.intValue ?? 0), of = Int(h[Header.of]?.intValue ?? 0)
        let bound = h[Header.maxBound]?.doubleValue
        if status == .partial {
            var job = open[id] ?? OpenJob(id: id, resolution: 0, of: of, deadline: nil, bound: nil, heardMs: nowMs)
            guard resolution > job.resolution, !finals.contains(where: { $0.id == id }) else { return nil }
            job.resolution = resolution
            job.of = of
            job.bound = bound ?? job.bound
            job.heardMs = nowMs
            open[id] = job
            totals.refinements += 1
            return .refined(job)
        }
        guard !finals.contains(where: { $0.id == id }) else { return nil }
        open[id] = nil
        let final = Final(id: id, status: status, resolution: resolution, of: of,
                          elapsedMs: h[Header.elapsed]?.doubleValue ?? 0, lateMs: h[Header.lateMilliseconds]?.doubleValue,
                          bound: bound, reason: h[Header.reason]?.stringValue, heardMs: nowMs)
        finals.append(final)
        if finals.count > recentLimit { finals.removeFirst(finals.count - recentLimit) }
        switch status {
        case .complete: totals.complete += 1
        case .deadline: totals.deadline += 1; if resolution == 0 { totals.nothingByDeadline += 1 }
        case .failed: totals.failed += 1
        case .partial: break
        }
        return .final(final)
    }

    /// Forgets open jobs whose final this view must have missed: a minute past their deadline
    /// (the aggregator answers at the deadline), or ten minutes unheard of without a known one.
    public mutating func prune(nowMs: Int64) {
        open = open.filter { _, job in
            if let d = job.deadline { return d.lateMs(at: nowMs) < 60_000 }
            return nowMs - job.heardMs < 600_000
        }
    }

    // MARK: Text

    /// The table: the title, what this view has seen, the pool's totals (when scraped), the open
    /// jobs (soonest deadline first, at most `maxOpen`) and the recent finals (newest first).
    public func render(nowMs: Int64, title: String, maxOpen: Int = 20) -> [String] {
        var lines = [title, "seen: \(open.count) open · finals \(totals.complete) complete, \(totals.deadline) at the deadline"
            + (totals.nothingByDeadline > 0 ? " (\(totals.nothingByDeadline) with nothing)" : "") + ", \(totals.failed) failed"]
        if let metrics { lines += metrics.render() }
        let jobs = open.values.sorted { ($0.deadline?.epochMs ?? .max, $0.id) < ($1.deadline?.epochMs ?? .max, $1.id) }
        let idWidth = min(32, max(12, (jobs.map(\.id.count) + finals.map(\.id.count)).max() ?? 0))
        lines.append("")
        lines.append(Self.pad("OPEN JOB", idWidth) + "  RES     STATUS    LEFT         BOUND")
        if jobs.isEmpty { lines.append("(none)") }
        for job in jobs.prefix(maxOpen) {
            let status = job.resolution == 0 ? "waiting" : "partial"
            lines.append(Self.pad(Self.short(job.id, idWidth), idWidth) + "  " + Self.pad("\(job.resolution)/\(job.of)", 6)
                         + "  " + Self.pad(status, 8) + "  " + Self.pad(Self.left(job.deadline, nowMs), 11)
                         + "  " + (job.bound.map(Self.scientific) ?? "–"))
        }
        if jobs.count > maxOpen { lines.append("… and \(jobs.count - maxOpen) more") }
        lines.append("")
        lines.append(Self.pad("RECENT FINAL", idWidth) + "  RES     STATUS    ELAPSED      LATE       BOUND")
        if finals.isEmpty { lines.append("(none yet)") }
        for f in finals.reversed() {
            var line = Self.pad(Self.short(f.id, idWidth), idWidth) + "  " + Self.pad("\(f.resolution)/\(f.of)", 6)
                + "  " + Self.pad(f.status.rawValue, 8) + "  " + Self.pad(Self.milliseconds(f.elapsedMs), 11)
                + "  " + Self.pad(f.lateMs.map { $0 >= 0 ? Self.milliseconds($0) : "early" } ?? "–", 9)
                + "  " + (f.bound.map(Self.scientific) ?? "–")
            if let reason = f.reason { line += "  " + String(reason.prefix(60)) }
            lines.append(line)
        }
        return lines
    }

    /// One line for `event` (the plain display: appended, never redrawn).
    public static func line(_ event: Event, nowMs: Int64) -> String {
        switch event {
        case .opened(let j):
            return "open    \(j.id)  0/\(j.of)  deadline in \(left(j.deadline, nowMs))"
        case .refined(let j):
            return "refine  \(j.id)  \(j.resolution)/\(j.of)  left \(left(j.deadline, nowMs))"
                + (j.bound.map { "  bound \(scientific($0))" } ?? "")
        case .final(let f):
            var text = "final   \(f.id)  \(f.resolution)/\(f.of)  \(f.status.rawValue)  elapsed \(milliseconds(f.elapsedMs))"
            if let late = f.lateMs, late >= 0 { text += "  late \(milliseconds(late))" }
            if let b = f.bound { text += "  bound \(scientific(b))" }
            if let r = f.reason { text += "  reason: \(r)" }
            return text
        }
    }

    /// "840 ms", "12.4 s", "late 3 ms" (past the deadline), "?" (unknown).
    static func left(_ deadline: Deadline?, _ nowMs: Int64) -> String {
        guard let d = deadline else { return "?" }
        let left = d.remainingMs(at: nowMs)
        return left >= 0 ? milliseconds(Double(left)) : "late " + milliseconds(Double(-left))
    }

    static func milliseconds(_ ms: Double) -> String {
        if ms < 1000 { return ms < 10 ? format(ms, 1) + " ms" : String(Int(ms.rounded())) + " ms" }
        if ms < 600_000 { return format(ms / 1000, 1) + " s" }
        return format(ms / 60_000, 1) + " min"
    }

    /// `v` with `digits` decimals (no Foundation formatting).
    static func format(_ v: Double, _ digits: Int) -> String {
        guard v.isFinite else { return "\(v)" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (abs(v) * scale).rounded()
        let whole = Int(r / scale), fraction = Int(r.truncatingRemainder(dividingBy: scale))
        let f = String(fraction)
        return (v < 0 && r > 0 ? "-" : "") + "\(whole)" + (digits > 0 ? "." + String(repeating: "0", count: digits - f.count) + f : "")
    }

    /// 3 significant digits with an exponent: 1.56e-02.
    static func scientific(_ v: Double) -> String {
        guard v.isFinite, v != 0 else { return v == 0 ? "0" : "\(v)" }
        var exponent = 0, m = abs(v)
        while m >= 10 { m /= 10; exponent += 1 }
        while m < 1 { m *= 10; exponent -= 1 }
        var mantissa = format(m, 2)
        if mantissa.hasPrefix("10.") { mantissa = "1.00"; exponent += 1 }
        let e = abs(exponent) < 10 ? "0\(abs(exponent))" : "\(abs(exponent))"
        return (v < 0 ? "-" : "") + mantissa + "e" + (exponent < 0 ? "-" : "+") + e
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    static func short(_ s: String, _ width: Int) -> String {
        s.count <= width ? s : String(s.prefix(width - 1)) + "…"
    }
}
