// `srproduce top`: what an operator keeps open in a terminal — the open jobs with their resolution
// and time left, the latest finals, and (with --metrics) the pool's totals and queue depths.
import ArgumentParser
import Foundation
import Logging
import SRCLISupport
import SRCore
import SRProtocol
import SRRoleSupport
import SRSubmission
import SRTransport

struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Watch the pool: open jobs, their resolution and time left, recent finals, and the pool's metrics.",
        discussion: """
            Follows sr.outputs through a queue of its own (exclusive, deleted when top exits: it \
            takes no message from anyone else): the aggregator's open notices (open.<id>) and every \
            job's outputs (job.#). A job appears when it opens — or at its next output if it \
            opened before top started (its time left is then '?') — and moves to the recent \
            finals when it is answered.

            On a terminal the table is redrawn every --interval: OPEN JOB, RES (resolution \
            reached / resolutions), STATUS (waiting: nothing yet; partial), LEFT (time to the \
            deadline, or how late it is), BOUND (max error bound of the latest resolution); then \
            RECENT FINAL with ELAPSED (since the job's creation) and LATE (how late the deadline \
            fired). With --metrics URL (repeatable: each consumer's and the aggregator's \
            --metrics-port) the pool's totals, queue depths and unanswered tasks by layer are \
            added. When standard output is not a terminal (or with --plain) every event is one \
            appended line (the totals at most every 10 s, when they changed), and the table is \
            printed once at the end.

            --once prints the table after one --interval and exits; --for DURATION exits after \
            that long (both for scripts). Ctrl-C (or SIGTERM) prints the table once more and exits 0.
            """)

    @Option(name: .customLong("metrics"), help: ArgumentHelp("A role's metrics endpoint to scrape every --interval, e.g. http://127.0.0.1:9464/metrics (repeat for each consumer and the aggregator).", valueName: "url"))
    var metrics: [String] = []

    @Option(parsing: .unconditional, help: ArgumentHelp("How often the table is redrawn and the metrics scraped, e.g. 1s.", valueName: "duration"),
            transform: Duration.parsedArgument)
    var interval: Duration = .seconds(1)

    @Option(name: .customLong("for"), parsing: .unconditional, help: ArgumentHelp("Exit after this long, printing the table once more (default: until Ctrl-C).", valueName: "duration"),
            transform: Duration.parsedArgument)
    var duration: Duration?

    @Flag(help: "Print the table once, after one --interval of listening, and exit.")
    var once = false

    @Flag(help: "One line per event even on a terminal (no redrawing).")
    var plain = false

    @Option(help: "Recent finals kept in the table.")
    var recent: Int = 8

    @Option(name: .customLong("max-open"), help: "Open jobs listed at most (soonest deadline first).")
    var maxOpen: Int = 20

    @OptionGroup var brokerOptions: BrokerOptions

    func validate() throws {
        for url in metrics {
            do { _ = try MetricsScrape.Address.parse(url) } catch { throw ValidationError("--metrics: \(error.description)") }
        }
        guard (1...1000).contains(recent) else { throw ValidationError("--recent must be in 1...1000") }
        guard (1...10_000).contains(maxOpen) else { throw ValidationError("--max-open must be in 1...10000") }
        if once && duration != nil { throw ValidationError("give --once or --for, not both") }
    }

    enum Event: Sendable {
        case message(Message)
        case tick
        case metrics(PoolMetrics)
        /// --once or --for ran out: stop, once a scrape in flight has answered.
        case timeUp
        case stop
    }

    func run() async throws {
        let addresses = metrics.compactMap(MetricsScrape.Address.init)
        let url = brokerOptions.url
        let transport = try await Connector.connect(url, logger: Logger(label: "srproduce"))
        let subscription: Subscription
        do {
            subscription = try await Self.follow(on: transport)
        } catch {
            await transport.close()
            throw error
        }
        let redraw = !plain && isatty(STDOUT_FILENO) == 1
        let title = "srproduce top · \(Self.withoutCredentials(url))"
        print("srproduce top: following sr.outputs on \(Self.withoutCredentials(url))" + (redraw ? "" : " (one line per event)"))
        fflush(nil)   // every stream (the C global stdout is off limits in Swift 6)

        let (events, sink) = AsyncStream<Event>.makeStream()
        let signals = Self.stopOnSignals { sink.yield(.stop) }
        defer { signals.forEach { $0.cancel() } }
        let stopAfter: Duration? = once ? interval : duration
        let interval = self.interval, once = self.once, maxOpen = self.maxOpen
        let blocking = BlockingWork(label: "sr.top.scrape")
        var view = PoolView(recentLimit: recent)

        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await d in subscription.deliveries {
                        try? await subscription.ack(d)
                        sink.yield(.message(d.message))
                    }
                } catch {}
                sink.yield(.stop)
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    sink.yield(.tick)
                }
            }
            if let stopAfter {
                group.addTask {
                    try? await Task.sleep(for: stopAfter)
                    sink.yield(.timeUp)
                }
            }
            var scraping = false, timeUp = false
            var lastMetricsLines: [String] = [], lastMetricsPrint: Int64 = 0
            func scrape() {
                guard !addresses.isEmpty, !scraping else { return }
                scraping = true
                group.addTask { sink.yield(.metrics(await Self.scrape(addresses, blocking))) }
            }
            scrape()
            for await event in events {
                let now = WallClock.nowMs()
                switch event {
                case .message(let m):
                    if let change = view.take(m, nowMs: now), !redraw {
                        print(Self.clock(now) + "  " + PoolView.line(change, nowMs: now))
                        fflush(nil)
                    }
                case .metrics(let m):
                    scraping = false
                    view.metrics = m
                    let lines = m.render()
                    // Appended lines: the totals when they changed, at most every 10 s.
                    if !redraw && !once && lines != lastMetricsLines && now - lastMetricsPrint >= 10_000 {
                        for line in lines { print(Self.clock(now) + "  " + line) }
                        fflush(nil)
                        lastMetricsPrint = now
                    }
                    lastMetricsLines = lines
                    if timeUp { sink.finish() }
                case .tick:
                    view.prune(nowMs: now)
                    scrape()
                    if redraw && !once {
                        print("\u{1B}[H\u{1B}[2J" + view.render(nowMs: now, title: title + " · " + Self.clock(now), maxOpen: maxOpen)
                            .joined(separator: "\n"))
                        fflush(nil)
                    }
                case .timeUp:
                    // The table at the end shows the pool's metrics when they were asked for.
                    timeUp = true
                    if !scraping { sink.finish() }
                case .stop:
                    sink.finish()
                }
            }
            group.cancelAll()
        }
        await subscription.cancel()
        await transport.close()
        let now = WallClock.nowMs()
        if redraw && !once { print("\u{1B}[H\u{1B}[2J", terminator: "") } else { print("") }
        print(view.render(nowMs: now, title: title + " · " + Self.clock(now), maxOpen: maxOpen).joined(separator: "\n"))
    }

    /// An exclusive, auto-deleted queue of top's own bound to sr.outputs for open notices and
    /// every job's outputs: copies, so no other reader loses a message.
    static func follow(on transport: any Transport) async throws -> Subscription {
        try await Topology.declare(on: transport)
        let queue = try await transport.declare(QueueSpec(name: "", durable: false, exclusive: true, autoDelete: true))
        for key in ["open.#", "job.#"] {
            try await transport.bind(BindingSpec(queue: queue, exchange: Topology.outputsExchange, routingKey: key))
        }
        return try await transport.subscribe(queue: queue, prefetch: 0)
    }

    /// Every endpoint once, summed; failures are listed, not thrown (a consumer may be restarting).
    static func scrape(_ addresses: [MetricsScrape.Address], _ blocking: BlockingWork) async -> PoolMetrics {
        var pool = PoolMetrics()
        for address in addresses {
            do {
                let (status, body) = try await blocking.run { try MetricsScrape.get(address, timeout: .seconds(2)) }
                if status == 200 { pool.add(prometheusText: body) } else { pool.errors.append("\(address): HTTP \(status)") }
            } catch {
                pool.errors.append("\(error)")
            }
        }
        return pool
    }

    /// SIGINT and SIGTERM end the watch (the table is printed once more) instead of the process.
    static func stopOnSignals(_ stop: @escaping @Sendable () -> Void) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: stop)
            source.resume()
            return source
        }
    }

    /// amqp://user:pass@host:port/vhost → amqp://host:port/vhost.
    static func withoutCredentials(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].firstIndex(of: "@") else { return url }
        return String(url[..<scheme.upperBound]) + String(url[url.index(after: at)...])
    }

    /// HH:MM:SS on this machine's clock.
    static func clock(_ ms: Int64) -> String {
        var seconds = time_t(ms / 1000)
        var t = tm()
        localtime_r(&seconds, &t)
        return String(format: "%02d:%02d:%02d", t.tm_hour, t.tm_min, t.tm_sec)
    }
}
