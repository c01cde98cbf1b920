// What `srproduce matvec --wait` shows while it waits: on a terminal, one status line redrawn in
// place (tasks taken per layer, time left) with the refinements printed above it; elsewhere,
// with --progress always, one plain line (or JSON object) per progress notice.
import Foundation
import SRProtocol
import Synchronization

/// When to ask for and show progress.
enum ProgressMode: String, CaseIterable, Sendable {
    /// On a terminal and without --json.
    case auto
    /// Also when not a terminal: one line per notice (JSON objects with --json).
    case always
    case never
}

final class ProgressDisplay: Sendable {
    struct State: Sendable {
        var latest: ProgressMessage?
        /// The highest resolution printed so far: layers below it are complete, whatever the
        /// last notice (throttled, so possibly older) said.
        var resolution = 0
        /// Whether a status line is on screen (and must be cleared before other output).
        var drawn = false
        var finished = false
    }

    let job: String
    let relativeDeadlineMs: Double
    /// Redraw one line in place (a terminal) or print each notice.
    let inPlace: Bool
    let json: Bool
    let clock: @Sendable () -> Double
    let write: @Sendable (String) -> Void
    let state = Mutex(State())

    /// `clock`: ms since the job was created, by this machine's wall clock.
    init(job: String, relativeDeadlineMs: Double, inPlace: Bool, json: Bool,
         clock: @escaping @Sendable () -> Double, write: @escaping @Sendable (String) -> Void) {
        self.job = job
        self.relativeDeadlineMs = relativeDeadlineMs
        self.inPlace = inPlace
        self.json = json
        self.clock = clock
        self.write = write
    }

    /// The status line: e.g. `j1 layers 8/8 5/8 0/8 · 13/24 tasks · 412 ms left`.
    static func render(job: String, layers: [ProgressMessage.Layer], elapsedMs: Double, relativeDeadlineMs: Double) -> String {
        let done = layers.reduce(0) { $0 + $1.done }, needed = layers.reduce(0) { $0 + $1.needed }
        let perLayer = layers.map { "\($0.done)/\($0.needed)" }.joined(separator: " ")
        let left = relativeDeadlineMs - elapsedMs
        let time = left >= 0 ? String(format: "%.0f ms left", left) : String(format: "%.0f ms past the deadline", -left)
        let shown = layers.isEmpty ? "waiting for the first partial" : "layers \(perLayer) · \(done)/\(needed) tasks"
        return "\(job) \(shown) · \(time)"
    }

    static func json(_ p: ProgressMessage) -> String {
        let layers = p.layers.map { "[\($0.done),\($0.needed)]" }.joined(separator: ",")
        return "{\"type\":\"progress\",\"job\":\"\(p.job)\",\"elapsed_ms\":\(String(format: "%.3f", p.elapsedMs)),\"layers\":[\(layers)]}"
    }

    func statusLine(_ s: State) -> String {
        var layers = s.latest?.layers ?? []
        for i in layers.indices where i < s.resolution { layers[i].done = layers[i].needed }
        if layers.isEmpty, s.resolution > 0 {
            let left = relativeDeadlineMs - clock()
            return "\(job) resolution \(s.resolution) in · " + (left >= 0 ? String(format: "%.0f ms left", left)
                                                                    : String(format: "%.0f ms past the deadline", -left))
        }
        return Self.render(job: job, layers: layers, elapsedMs: clock(), relativeDeadlineMs: relativeDeadlineMs)
    }

    /// A progress notice arrived.
    func update(_ p: ProgressMessage) {
        state.withLock { s in
            guard !s.finished else { return }
            s.latest = p
            if inPlace { redraw(&s) } else {
                write((json ? Self.json(p) : Self.render(job: job, layers: p.layers, elapsedMs: p.elapsedMs,
                                                         relativeDeadlineMs: relativeDeadlineMs)) + "\n")
            }
        }
    }

    /// A line of other output (a refinement of `resolution`, when it is one): above the status
    /// line, which is drawn again.
    func line(_ text: String, resolution: Int? = nil) {
        state.withLock { s in
            if let resolution { s.resolution = max(s.resolution, resolution) }
            if s.drawn { write("\r\u{1B}[K") }
            write(text + "\n")
            s.drawn = false
            if inPlace, !s.finished { redraw(&s) }
        }
    }

    /// The clock moved: time left changes even when no notice comes.
    func tick() {
        state.withLock { s in if inPlace, !s.finished { redraw(&s) } }
    }

    /// Clears the status line for good (the final answer follows).
    func finish() {
        state.withLock { s in
            if s.drawn { write("\r\u{1B}[K") }
            s.drawn = false
            s.finished = true
        }
    }

    private func redraw(_ s: inout State) {
        write("\r\u{1B}[K" + statusLine(s))
        s.drawn = true
    }
}
