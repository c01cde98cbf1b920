// A pool you can watch, against a real RabbitMQ: sraggregate and srconsume with --metrics-port,
// a job through them, /metrics scraped over HTTP until the counters have moved; `srproduce top`
// following the same job (one line per event, then its table) and `top --once` reading the
// pool's totals. Ports are picked by the kernel; every wait polls for its event, bounded.
import Foundation
import SRCLISupport
import SRRoleSupport
import SRSubmission
import Testing

@Suite(.enabled(if: BrokerEnvironment.url != nil && ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"] != nil
                && Executables.available,
                "needs SR_AMQP_URL, SR_RABBITMQ_DIR and the executables (scripts/test.sh)"),
       .serialized, .timeLimit(.minutes(10)))
struct MetricsCLITests {
    let blocking = BlockingWork(label: "test.scrape")

    /// A port nobody listens on now (the kernel's choice); a role that loses the race to it
    /// exits, and `spawnServing` tries another.
    static func freePort() throws -> Int {
        let probe = try MetricsEndpoint(.init(host: "127.0.0.1", port: 0)) { [] }
        defer { probe.stop() }
        return probe.port
    }

    func scrape(_ port: Int, path: String = "/metrics") async throws -> (status: Int, body: String) {
        let address = try MetricsScrape.Address.parse("http://127.0.0.1:\(port)\(path)")
        return try await blocking.run { try MetricsScrape.get(address, timeout: .seconds(5)) }
    }

    /// Starts `role` with --metrics-port and waits until its endpoint answers.
    func spawnServing(_ pool: ProcessKillTests.Pool, _ role: String, _ args: [String] = []) async throws -> (Process, Int) {
        for _ in 0..<5 {
            let port = try Self.freePort()
            let process = try pool.spawn(role, args + ["--metrics-port", "\(port)"])
            let deadline = ContinuousClock.now + .seconds(120)
            while process.isRunning && ContinuousClock.now < deadline {
                if let (status, _) = try? await scrape(port), status == 200 { return (process, port) }
                try await Task.sleep(for: .milliseconds(50))
            }
            if process.isRunning { throw TestFailure("\(role) did not serve metrics on port \(port) within 120 s") }
            // Lost the port to someone else: try another.
        }
        throw TestFailure("\(role) could not bind a metrics port in 5 tries")
    }

    /// Sum of a metric's samples whose labels include `labels`.
    func total(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = PoolMetrics.samples(text).filter { s in s.name == name && labels.allSatisfy { s.labels[$0.key] == $0.value } }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
    }

    /// Polls `port`'s metrics until `condition` holds for them; returns the last text.
    func metrics(_ port: Int, until what: String, within limit: Duration = .seconds(120), _ condition: (String) -> Bool) async throws -> String {
        let deadline = ContinuousClock.now + limit
        var last = ""
        while ContinuousClock.now < deadline {
            let (status, body) = try await scrape(port)
            if status == 200 {
                last = body
                if condition(body) { return body }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("not within \(limit): \(what); last scrape:\n\(last)")
    }

    /// Polls a log file until it contains `text`.
    func waitFor(_ text: String, in path: String, within limit: Duration = .seconds(120)) async throws -> String {
        let deadline = ContinuousClock.now + limit
        var content = ""
        while ContinuousClock.now < deadline {
            content = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if content.contains(text) { return content }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("'\(text)' not in \(path) within \(limit):\n\(content)")
    }

    struct TestFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    @Test func aJobMovesTheCountersScrapedOverHTTPAndTopFollowsIt() async throws {
        let pool = try await ProcessKillTests.Pool()
        do {
            let (_, aggregatorPort) = try await spawnServing(pool, "sraggregate")
            let (_, consumerPort) = try await spawnServing(pool, "srconsume", ["--name", "watched"])
            let urls = ["http://127.0.0.1:\(aggregatorPort)/metrics", "http://127.0.0.1:\(consumerPort)/metrics"]

            // Before any job: the endpoints answer, nothing computed; only /metrics is served.
            let before = try await scrape(consumerPort).body
            #expect((total(before, "sr_tasks_computed_total") ?? 0) == 0, "\(before)")
            #expect(try await scrape(aggregatorPort, path: "/").status == 404)

            // top follows the outputs from a queue of its own before the job is submitted.
            let top = try pool.spawn("srproduce", ["top", "--for", "10min", "--interval", "200ms"] + urls.flatMap { ["--metrics", $0] })
            let topLog = pool.dir + "/srproduce-\(pool.processes.count - 1).log"
            _ = try await waitFor("srproduce top: following sr.outputs", in: topLog)

            let cli = CLITests()
            let a = try cli.npy("a.npy", (0..<64).map { Double($0 % 13) / 8 - 0.7 }, shape: [8, 8])
            let x = try cli.npy("x.npy", (0..<8).map { Double($0) / 4 - 1 }, shape: [8])
            let id = "watched-\(UInt32.random(in: 0...UInt32.max))"
            let env = ["SR_AMQP_URL": pool.url, "SR_STORE": pool.store]
            let (status, output) = try await Executables.run(
                "srproduce", ["matvec", "--matrix", a, "--vector", x, "--deadline", "120s", "--wait", "--id", id],
                environment: env, timeout: .seconds(180))
            try #require(status == 0 && output.contains("complete"), "\(output)")

            // "job <id>: N tasks, …": each computed once by the one consumer, which counts a task
            // once its partial is confirmed — maybe just after the answer reached us: poll.
            let tasks = try #require(output.split(separator: "\n").first { $0.hasPrefix("job \(id): ") }
                .flatMap { Double($0.split(separator: " ")[2]) }, "\(output)")
            // The consumer's counters and compute-time histogram moved; sr.tasks was sampled.
            let consumer = try await metrics(consumerPort, until: "the consumer counted its \(tasks) tasks") {
                total($0, "sr_tasks_computed_total", ["kind": "matvec"]) == tasks
            }
            #expect(total(consumer, "sr_task_compute_seconds_count", ["kind": "matvec"]) == tasks, "\(consumer)")
            #expect((total(consumer, "sr_task_compute_seconds_count", ["kind": "matvec", "layer": "0"]) ?? 0) >= 1, "\(consumer)")
            #expect(total(consumer, "sr_queue_messages", ["queue": "sr.tasks"]) != nil, "\(consumer)")
            #expect((total(consumer, "sr_dead_letters_total") ?? 0) == 0)

            // The aggregator's: one job opened and answered complete before its deadline, every
            // resolution published with its latency, nothing outstanding.
            let aggregator = try await metrics(aggregatorPort, until: "the aggregator counted the final") {
                total($0, "sr_deadline_hits_total", ["kind": "matvec"]) == 1
            }
            #expect(total(aggregator, "sr_jobs_opened_total") == 1, "\(aggregator)")
            #expect(total(aggregator, "sr_refinements_total", ["kind": "matvec", "status": "complete"]) == 1)
            #expect((total(aggregator, "sr_refinements_total", ["kind": "matvec", "status": "partial"]) ?? 0) >= 1)
            #expect(total(aggregator, "sr_resolution_latency_seconds_count", ["kind": "matvec", "resolution": "1"]) == 1)
            #expect(total(aggregator, "sr_partials_received_total") == total(consumer, "sr_tasks_computed_total"))
            #expect(total(aggregator, "sr_jobs_open") == 0 && total(aggregator, "sr_tasks_outstanding") == 0)
            #expect(total(aggregator, "sr_queue_messages", ["queue": "sr.partials"]) != nil)

            // top saw the job open, refine and finish; Ctrl-C prints its table and exits 0.
            _ = try await waitFor("final   \(id)", in: topLog)
            kill(top.processIdentifier, SIGINT)
            let exitBy = ContinuousClock.now + .seconds(60)
            while top.isRunning && ContinuousClock.now < exitBy { try await Task.sleep(for: .milliseconds(20)) }
            try #require(!top.isRunning, "top did not exit on SIGINT")
            let watched = try String(contentsOfFile: topLog, encoding: .utf8)
            #expect(top.terminationStatus == 0, "\(watched)")
            #expect(watched.contains("open    \(id)  0/5"), "\(watched)")
            #expect(watched.contains("refine  \(id)  1/5"), "\(watched)")
            #expect(watched.contains("final   \(id)  5/5  complete"), "\(watched)")
            #expect(watched.contains("RECENT FINAL") && watched.contains("tasks: ") && watched.contains(" computed, "), "\(watched)")

            // --once: one look, with the pool's totals, for scripts.
            let (onceStatus, once) = try await Executables.run(
                "srproduce", ["top", "--once", "--interval", "300ms"] + urls.flatMap { ["--metrics", $0] },
                environment: env, timeout: .seconds(120))
            #expect(onceStatus == 0, "\(once)")
            #expect(once.contains("OPEN JOB") && once.contains("deadlines: 1 met, 0 missed"), "\(once)")
            let computed = total(consumer, "sr_tasks_computed_total").map { Int($0) } ?? -1
            #expect(once.contains("tasks: \(computed) computed, 0 skipped past their deadline, 0 dead-lettered"), "\(once)")
        } catch {
            await pool.finish()
            throw error
        }
        await pool.finish()
    }
}
