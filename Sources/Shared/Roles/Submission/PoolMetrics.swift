// The pool's totals as `srproduce top` shows them, summed over the metrics endpoints it scrapes
// (consumers and aggregators): read from the Prometheus text format, the `sr_` metrics only.

public struct PoolMetrics: Sendable, Equatable {
    public var tasksComputed = 0.0
    public var tasksSkipped = 0.0
    public var deadLetters = 0.0
    public var refinements = 0.0
    public var deadlineHits = 0.0
    public var deadlineMisses = 0.0
    public var cacheHits = 0.0
    public var cacheMisses = 0.0
    /// Open jobs by the aggregators' count (`sr_jobs_open`).
    public var openJobs: Double?
    /// Ready messages by queue (`sr_queue_messages`; the largest report of each queue).
    public var queues: [String: Double] = [:]
    /// Unanswered tasks of open jobs by layer label (`sr_tasks_outstanding`).
    public var outstanding: [String: Double] = [:]
    /// Time from a job's creation to its first resolution: sum (seconds) and count over the
    /// endpoints.
    public var firstResolutionSum = 0.0, firstResolutionCount = 0.0
    /// Mean time from a job's creation to its first resolution (seconds), if any was measured.
    public var firstResolutionMean: Double? { firstResolutionCount > 0 ? firstResolutionSum / firstResolutionCount : nil }
    /// Endpoints that answered, and what went wrong with the others.
    public var scraped = 0
    public var errors: [String] = []

    public init() {}

    /// One sample of the text format: name, labels, value.
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    /// Adds one endpoint's exposition (Prometheus text format 0.0.4).
    public mutating func add(prometheusText text: String) {
        scraped += 1
        for s in Self.samples(text) {
            switch s.name {
            case "sr_tasks_computed_total": tasksComputed += s.value
            case "sr_tasks_skipped_total": tasksSkipped += s.value
            case "sr_dead_letters_total": deadLetters += s.value
            case "sr_refinements_total": refinements += s.value
            case "sr_deadline_hits_total": deadlineHits += s.value
            case "sr_deadline_misses_total": deadlineMisses += s.value
            case "sr_operand_cache_hits_total": cacheHits += s.value
            case "sr_operand_cache_misses_total": cacheMisses += s.value
            case "sr_jobs_open": openJobs = (openJobs ?? 0) + s.value
            case "sr_queue_messages":
                if let q = s.labels["queue"] { queues[q] = max(queues[q] ?? 0, s.value) }
            case "sr_tasks_outstanding":
                if let l = s.labels["layer"] { outstanding[l, default: 0] += s.value }
            case "sr_resolution_latency_seconds_sum" where s.labels["resolution"] == "1": firstResolutionSum += s.value
            case "sr_resolution_latency_seconds_count" where s.labels["resolution"] == "1": firstResolutionCount += s.value
            default: break
            }
        }
    }

    /// The samples of a text exposition; comment lines and lines that do not parse are skipped.
    public static func samples(_ text: String) -> [Sample] {
        text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).compactMap { sample(Substring($0)) }
    }

    /// `name{label="value",…} value [timestamp]`, or nil.
    static func sample(_ line: Substring) -> Sample? {
        let line = line.drop { $0 == " " || $0 == "\t" }
        guard let first = line.first, first != "#" else { return nil }
        let name = line.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }
        guard !name.isEmpty else { return nil }
        var rest = line.dropFirst(name.count)
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while true {
                rest = rest.drop { $0 == " " || $0 == "," }
                if rest.first == "}" { rest = rest.dropFirst(); break }
                let key = rest.prefix { $0 != "=" }
                rest = rest.dropFirst(key.count)
                guard rest.first == "=", rest.dropFirst().first == "\"" else { return nil }
                rest = rest.dropFirst(2)
                var value = ""
                var closed = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if c == "\\", let next = rest.first {
                        rest = rest.dropFirst()
                        value.append(next == "n" ? "\n" : next)
                    } else if c == "\"" {
                        closed = true
                        break
                    } else {
                        value.append(c)
                    }
                }
                guard closed else { return nil }
                labels[String(key)] = value
            }
        }
        let fields = rest.split(separator: " ", omittingEmptySubsequences: true)
        guard let raw = fields.first else { return nil }
        let value: Double? = switch raw {
        case "+Inf", "Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: Double(raw)
        }
        guard let value else { return nil }
        return Sample(name: String(name), labels: labels, value: value)
    }

    /// The topology's queues in the order an operator reads them (others after, by name).
    static let queueOrder = ["sr.tasks", "sr.partials", "sr.jobs", "sr.deadlines", "sr.dead"]

    /// The totals as lines for the table: tasks, deadlines, queues, backlog by layer, errors.
    public func render() -> [String] {
        var lines: [String] = []
        var tasks = "tasks: \(Self.count(tasksComputed)) computed, \(Self.count(tasksSkipped)) skipped past their deadline, "
            + "\(Self.count(deadLetters)) dead-lettered"
        if cacheHits + cacheMisses > 0 { tasks += " · operand cache \(Self.count(cacheHits))/\(Self.count(cacheHits + cacheMisses)) hits" }
        lines.append(tasks)
        var jobs = "deadlines: \(Self.count(deadlineHits)) met, \(Self.count(deadlineMisses)) missed"
        if let mean = firstResolutionMean { jobs += " · first resolution after \(PoolView.milliseconds(mean * 1000)) (mean)" }
        if let openJobs { jobs += " · \(Self.count(openJobs)) open at the aggregator" }
        lines.append(jobs)
        let ordered = queues.sorted { (Self.queueOrder.firstIndex(of: $0.key) ?? 99, $0.key) < (Self.queueOrder.firstIndex(of: $1.key) ?? 99, $1.key) }
        if !ordered.isEmpty {
            lines.append("queues (ready messages): " + ordered.map { "\($0.key) \(Self.count($0.value))" }.joined(separator: ", "))
        }
        let layers = outstanding.filter { $0.value > 0 }.sorted { Self.layerOrder($0.key) < Self.layerOrder($1.key) }
        if !outstanding.isEmpty || openJobs != nil {
            lines.append("unanswered tasks of open jobs, by layer: "
                         + (layers.isEmpty ? "none" : layers.map { "L\($0.key) \(Self.count($0.value))" }.joined(separator: ", ")))
        }
        if !errors.isEmpty { lines.append("metrics: " + errors.joined(separator: "; ")) }
        return lines
    }

    static func count(_ v: Double) -> String { v.isFinite ? String(Int(v.rounded())) : "\(v)" }

    static func layerOrder(_ label: String) -> Int { Int(label.filter(\.isNumber)).map { label.hasSuffix("+") ? $0 + 1 : $0 } ?? .max }
}
