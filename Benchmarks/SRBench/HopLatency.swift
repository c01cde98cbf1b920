// srbench hop-latency: one broker hop through this project's AMQP client (publish with confirm
// on one connection → delivery on another), the figure every pipeline hop pays.
import ArgumentParser
import Foundation
import Logging
import SRCLISupport
import SRTransport

struct HopLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hop-latency",
        abstract: "Median time from publish to delivery through RabbitMQ with this project's AMQP client.",
        discussion: "Compare with the same measurement by another client (pika) on the same broker: docs/BENCHMARKS.md.")

    @Option(help: ArgumentHelp("RabbitMQ URL (default: $SR_AMQP_URL).", valueName: "url"))
    var broker: String?

    @Option(help: "Message sizes in bytes.")
    var sizes: String = "100,16384,65536"

    @Option(help: "Messages per size.")
    var count: Int = 200

    func run() async throws {
        var logger = Logger(label: "srbench")
        logger.logLevel = .warning
        let url = broker ?? ProcessInfo.processInfo.environment["SR_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/%2F"
        let publisher = try await Connector.connect(url, logger: logger)
        let consumer = try await Connector.connect(url, logger: logger)
        let queue = try await consumer.declare(QueueSpec(name: "", durable: false, exclusive: true, autoDelete: true))
        let subscription = try await consumer.subscribe(queue: queue, prefetch: 0)
        var iterator = subscription.deliveries.makeAsyncIterator()
        let clock = ContinuousClock()
        for size in sizes.split(separator: ",").compactMap({ Int($0) }) {
            var latencies: [Double] = []
            for _ in 0..<count {
                let start = clock.now
                try await publisher.publish(Message(body: [UInt8](repeating: 7, count: size), persistent: false),
                                            exchange: "", routingKey: queue)
                guard let d = try await iterator.next() else { throw CleanExit.message("the subscription ended") }
                latencies.append((clock.now - start).milliseconds)
                try await subscription.ack(d)
            }
            let l = latencies.dropFirst(5).sorted()
            print(String(format: "srbench publish(confirmed)→delivered, %d B: p50 %.3f ms p90 %.3f", size,
                         l[l.count / 2], l[Int(Double(l.count) * 0.9)]))
        }
        await subscription.cancel()
        await publisher.close()
        await consumer.close()
    }
}
