// `srproduce top`'s view as text: open notices and outputs in, table and event lines out; and
// the pool totals read from the Prometheus text format. No broker, no clock (times are passed).
import Testing
@testable import SRCore
@testable import SRProtocol
@testable import SRSubmission
@testable import SRTransport

@Suite struct PoolViewTests {
    let t0: Int64 = 1_800_000_000_000

    func output(_ job: String, _ r: Int, of: Int = 5, _ status: OutputStatus, elapsed: Double, bound: Double = 0.5, late: Double? = nil) -> Message {
        var o = OutputMessage(job: job, resolution: r, of: of, status: status, elapsedMs: elapsed,
                              values: Matrix(rows: 1, columns: 1, elements: [1]), bound: Matrix(rows: 1, columns: 1, elements: [bound]),
                              lateMs: late)
        o.verified = true
        return o.encode()
    }

    @Test func aJobMovesFromOpenToRecentFinals() {
        var view = PoolView()
        let opened = view.take(OpenedNotice(job: "j1", of: 5, deadline: Deadline(epochMs: t0 + 1500), elapsedMs: 2).encode(), nowMs: t0)
        #expect(opened == .opened(.init(id: "j1", resolution: 0, of: 5, deadline: Deadline(epochMs: t0 + 1500), bound: nil, heardMs: t0)))
        #expect(PoolView.line(opened!, nowMs: t0) == "open    j1  0/5  deadline in 1.5 s")
        var table = view.render(nowMs: t0 + 700, title: "top")
        #expect(table.contains("j1            0/5     waiting   800 ms       –"), "\(table.joined(separator: "\n"))")

        let refined = view.take(output("j1", 2, .partial, elapsed: 40, bound: 0.0156), nowMs: t0 + 40)
        #expect(PoolView.line(refined!, nowMs: t0 + 40) == "refine  j1  2/5  left 1.5 s  bound 1.56e-02")
        // A repeat (at-least-once outputs) or an older resolution changes nothing.
        #expect(view.take(output("j1", 2, .partial, elapsed: 40), nowMs: t0 + 41) == nil)
        #expect(view.take(output("j1", 1, .partial, elapsed: 30), nowMs: t0 + 41) == nil)
        table = view.render(nowMs: t0 + 1512, title: "top")
        #expect(table.contains("j1            2/5     partial   late 12 ms   1.56e-02"), "\(table.joined(separator: "\n"))")

        let final = view.take(output("j1", 4, .deadline, elapsed: 1501.5, bound: 3.3e-4, late: 1.5), nowMs: t0 + 1502)
        #expect(PoolView.line(final!, nowMs: t0 + 1502) == "final   j1  4/5  deadline  elapsed 1.5 s  late 1.5 ms  bound 3.30e-04")
        #expect(view.open.isEmpty && view.finals.map(\.id) == ["j1"])
        #expect(view.take(output("j1", 4, .deadline, elapsed: 1501.5), nowMs: t0 + 1503) == nil)
        table = view.render(nowMs: t0 + 2000, title: "top")
        #expect(table[0...1] == ["top", "seen: 0 open · finals 0 complete, 1 at the deadline, 0 failed"])
        #expect(table.contains("(none)"))
        #expect(table.contains("j1            4/5     deadline  1.5 s        1.5 ms     3.30e-04"), "\(table.joined(separator: "\n"))")
    }

    @Test func outputsBeforeTheNoticeAndWithoutOneStillShow() {
        var view = PoolView()
        // top started after j2 opened: known from its output, no deadline.
        _ = view.take(output("j2", 1, of: 3, .partial, elapsed: 5), nowMs: t0)
        #expect(view.open["j2"]?.deadline == nil)
        #expect(view.render(nowMs: t0, title: "t").contains { $0.hasPrefix("j2") && $0.contains("1/3") && $0.contains(" ? ") })
        // The notice overtaken by the output fills in the deadline, keeping the resolution.
        #expect(view.take(OpenedNotice(job: "j2", of: 3, deadline: Deadline(epochMs: t0 + 100), elapsedMs: 1).encode(), nowMs: t0 + 1) == nil)
        #expect(view.open["j2"]?.resolution == 1 && view.open["j2"]?.deadline == Deadline(epochMs: t0 + 100))
        // A failed job with its reason; nothing computed by the deadline is counted apart.
        var failed = OutputMessage.failed(job: "j3", of: 0, elapsedMs: 0, reason: "refused: too large")
        failed.verified = nil
        _ = view.take(failed.encode(), nowMs: t0)
        _ = view.take(output("j4", 0, .deadline, elapsed: 100, late: 0.2), nowMs: t0)
        let table = view.render(nowMs: t0, title: "t")
        #expect(table[1] == "seen: 1 open · finals 0 complete, 1 at the deadline (1 with nothing), 1 failed")
        #expect(table.contains { $0.hasPrefix("j3") && $0.contains("failed") && $0.hasSuffix("refused: too large") })
        // Anything else on the exchange is ignored.
        #expect(view.take(DoneMessage(job: "j2", layer: 0).encode(), nowMs: t0) == nil)
        #expect(view.take(Message(body: [1, 2, 3]), nowMs: t0) == nil)
    }

    @Test func jobsWhoseFinalWasMissedAreForgotten() {
        var view = PoolView(recentLimit: 2)
        _ = view.take(OpenedNotice(job: "a", of: 2, deadline: Deadline(epochMs: t0), elapsedMs: 0).encode(), nowMs: t0)
        _ = view.take(output("b", 1, of: 2, .partial, elapsed: 1), nowMs: t0)
        view.prune(nowMs: t0 + 59_999)
        #expect(Set(view.open.keys) == ["a", "b"])
        view.prune(nowMs: t0 + 60_000)
        #expect(Set(view.open.keys) == ["b"])
        view.prune(nowMs: t0 + 600_000)
        #expect(view.open.isEmpty)
        for id in ["c", "d", "e"] { _ = view.take(output(id, 2, of: 2, .complete, elapsed: 3), nowMs: t0) }
        #expect(view.finals.map(\.id) == ["d", "e"])
    }

    @Test func numbersAreFormattedForPeople() {
        #expect(PoolView.milliseconds(0.25) == "0.3 ms")
        #expect(PoolView.milliseconds(12.4) == "12 ms")
        #expect(PoolView.milliseconds(1500) == "1.5 s")
        #expect(PoolView.milliseconds(720_000) == "12.0 min")
        #expect(PoolView.scientific(0.0156) == "1.56e-02")
        #expect(PoolView.scientific(999.6) == "1.00e+03")
        #expect(PoolView.scientific(-2e-12) == "-2.00e-12")
        #expect(PoolView.scientific(0) == "0")
    }

    static let exposition = """
        # TYPE sr_tasks_computed_total counter
        sr_tasks_computed_total{kind="matvec",layer="0"} 12
        sr_tasks_computed_total{kind="matvec",layer="1"} 8
        sr_tasks_skipped_total{reason="past_deadline"} 2
        sr_dead_letters_total{role="consumer"} 1
        sr_operand_cache_hits_total 19
        sr_operand_cache_misses_total 1
        sr_queue_messages{queue="sr.tasks"} 4
        # TYPE sr_resolution_latency_seconds histogram
        sr_resolution_latency_seconds_bucket{kind="matvec",resolution="1",le="0.005"} 3
        sr_resolution_latency_seconds_sum{kind="matvec",resolution="1"} 0.375
        sr_resolution_latency_seconds_count{kind="matvec",resolution="1"} 3
        sr_resolution_latency_seconds_sum{kind="matvec",resolution="2"} 9
        sr_resolution_latency_seconds_count{kind="matvec",resolution="2"} 3
        sr_deadline_hits_total{kind="matvec"} 5
        sr_deadline_misses_total{kind="matvec",result="partial"} 1
        sr_deadline_misses_total{kind="infer",result="none"} 1
        sr_tasks_outstanding{layer="0"} 0
        sr_tasks_outstanding{layer="2"} 3
        sr_tasks_outstanding{layer="16+"} 1
        sr_jobs_open 2
        sr_odd{label="a \\"quoted\\", comma",x="y"} 7 1700000000000
        not a sample line at all
        """

    @Test func poolTotalsAreReadFromTheTextFormat() {
        let samples = PoolMetrics.samples(Self.exposition)
        #expect(samples.contains(.init(name: "sr_odd", labels: ["label": "a \"quoted\", comma", "x": "y"], value: 7)))
        var pool = PoolMetrics()
        pool.add(prometheusText: Self.exposition)
        pool.add(prometheusText: "sr_tasks_computed_total{kind=\"infer\",layer=\"0\"} 5\nsr_queue_messages{queue=\"sr.tasks\"} 3\n"
                 + "sr_queue_messages{queue=\"sr.dead\"} 0\nsr_queue_messages{queue=\"other\"} 1\n")
        #expect(pool.scraped == 2 && pool.tasksComputed == 25 && pool.tasksSkipped == 2 && pool.deadLetters == 1)
        #expect(pool.deadlineHits == 5 && pool.deadlineMisses == 2 && pool.openJobs == 2)
        #expect(pool.queues == ["sr.tasks": 4, "sr.dead": 0, "other": 1] && pool.outstanding == ["0": 0, "2": 3, "16+": 1])
        #expect(pool.firstResolutionMean == 0.125)
        #expect(pool.render() == [
            "tasks: 25 computed, 2 skipped past their deadline, 1 dead-lettered · operand cache 19/20 hits",
            "deadlines: 5 met, 2 missed · first resolution after 125 ms (mean) · 2 open at the aggregator",
            "queues (ready messages): sr.tasks 4, sr.dead 0, other 1",
            "unanswered tasks of open jobs, by layer: L2 3, L16+ 1",
        ])
        pool.errors.append("http://127.0.0.1:1/metrics: connection refused")
        #expect(pool.render().last == "metrics: http://127.0.0.1:1/metrics: connection refused")
    }
}
