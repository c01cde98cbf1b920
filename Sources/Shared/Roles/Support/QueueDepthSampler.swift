// Queue depth as a metric: every so often, the number of ready messages in a few queues,
// asked through the Transport protocol (AMQP: a passive queue declare), never through AMQP itself.
import CoreMetrics
import SRTransport

/// Samples `sr_queue_messages{queue}` (ready messages, not yet delivered) for a fixed set of
/// queues. A queue the broker does not know, or a failed request, leaves its gauge unchanged.
public struct QueueDepthSampler: Sendable {
    public let queues: [String]
    public let interval: Duration
    let transport: any Transport
    let gauges: [String: Gauge]

    public static let metric = "sr_queue_messages"

    public init(queues: [String], interval: Duration, transport: any Transport, factory: any MetricsFactory) {
        self.queues = queues
        self.interval = interval
        self.transport = transport
        gauges = Dictionary(uniqueKeysWithValues: queues.map {
            ($0, Gauge(label: Self.metric, dimensions: [("queue", $0)], factory: factory))
        })
    }

    /// One sample of every queue (one broker round trip each).
    public func sample() async {
        for q in queues {
            if let n = try? await transport.messageCount(queue: q) { gauges[q]?.record(n) }
        }
    }

    /// Samples until cancelled.
    public func run() async {
        while !Task.isCancelled {
            await sample()
            try? await Task.sleep(for: interval)
        }
    }
}
