// Least privilege on a real RabbitMQ: with the per-role users of
// scripts/rabbitmq-users.sh, a consumer cannot publish an open record, a deadline or an output,
// a producer cannot take tasks or send partials — and a job run entirely under those users
// completes, exact. Runs in a vhost of its own.
import Foundation
import Logging
import ServiceLifecycle
import SRAMQP
import SRCore
import SRProtocol
import SRWorker
import SRAggregatorService
import SRSubmission
import SRStore
import SRTransport
import Testing

extension AMQPIntegration {
    @Suite(.enabled(if: ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"] != nil,
                    "set SR_RABBITMQ_DIR (source the env file of scripts/rabbitmq-start.sh)"),
           .timeLimit(.minutes(10)))
    struct PermissionsTests {
        static let passwords = ["producer": "p-\(UInt32.random(in: 0...UInt32.max))",
                                "consumer": "c-\(UInt32.random(in: 0...UInt32.max))",
                                "aggregator": "a-\(UInt32.random(in: 0...UInt32.max))"]

        /// Runs scripts/rabbitmq-users.sh for `vhost` with known passwords.
        func createUsers(dir: String, vhost: String) async throws {
            var env = ProcessInfo.processInfo.environment
            for (role, password) in Self.passwords { env["SR_\(role.uppercased())_PASSWORD"] = password }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = [AMQPSupport.scripts.appendingPathComponent("rabbitmq-users.sh").path, "--dir", dir, "--vhost", vhost,
                           "--out", FileManager.default.temporaryDirectory.appendingPathComponent("sr-users-\(UUID().uuidString).env").path]
            p.environment = env
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            try p.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            try #require(p.terminationStatus == 0, "rabbitmq-users.sh failed: \(output)")
        }

        func connect(_ role: String, _ base: AMQPURL) async throws -> AMQPTransport {
            var url = base
            url.user = "sr-\(role)"
            url.password = Self.passwords[role]!
            return try await AMQPTransport.connect(url, logger: AMQPSupport.logger)
        }

        @Test func eachRoleCanDoOnlyItsPart() async throws {
            let dir = ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"]!
            var url = try AMQPURL(AMQPSupport.url())
            url.vhost = AMQPSupport.name("perm")
            let (status, output) = try await AMQPSupport.rabbitmqctl(dir, ["add_vhost", url.vhost])
            try #require(status == 0, "add_vhost: \(output)")
            try await createUsers(dir: dir, vhost: url.vhost)

            // The aggregator's user declares the topology; the others only find it.
            var logger = Logger(label: "perm")
            logger.logLevel = .critical
            let aggregatorT = try await connect("aggregator", url)
            let aggregator = AggregatorService(transport: aggregatorT, logger: logger)
            let aggregatorRun = Task { try await aggregator.run() }
            let producer = try await connect("producer", url)
            _ = try await AMQPSupport.withTimeout(.seconds(60), "the aggregator's topology") {
                while (try? await producer.messageCount(queue: Topology.deadQueue)) == nil { try await Task.sleep(for: .milliseconds(20)) }
                return true
            }
            let consumerT = try await connect("consumer", url)
            let worker = TaskWorker(transport: consumerT, store: OperandStore(root: FileManager.default.temporaryDirectory.appendingPathComponent("sr-perm-\(UUID().uuidString)").path),
                                    configuration: .init(), logger: logger)
            let workerRun = Task { try await worker.run() }

            // A whole job under the three users: exact.
            var g = SplitMix64(seed: 5)
            let a = Matrix(rows: 24, columns: 16, elements: (0..<384).map { _ in Double.random(in: -2..<2, using: &g) })
            let x = Matrix(column: (0..<16).map { _ in Double.random(in: -1..<1, using: &g) })
            let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: 2, bits: 5)
            let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: 2, bits: 5)
            let request = MatVecRequest(operand: .inline(a), vectors: x, partitionA: p, partitionX: q,
                                        schedule: try .bySignificance(chunksA: 2, chunksX: 2), deadline: .seconds(600), rowBlock: 8, id: "perm1")
            let watcher = try await OutputWatcher.watch(["perm1"], on: producer)
            _ = try await JobSubmitter(transport: producer).submit(request)
            var final: OutputMessage?
            while let o = try await watcher.next(within: .seconds(120)) {
                if o.status != .partial { final = o; break }
            }
            #expect(final?.status == .complete && final?.verified == true, "the job under per-role users: \(String(describing: final?.status))")
            let reference = (0..<24).map { r in (0..<16).reduce(0.0) { $0 + a[r, $1] * x[$1, 0] } }
            for r in 0..<24 { #expect(abs(final!.values[r, 0] - reference[r]) <= final!.bound[r, 0] + 1e-12) }

            // What a consumer's credentials must not do.
            let forged = Message(body: [], headers: ["sr-version": .int(1), "sr-kind": .string("deadline")])
            for (route, what) in [(Topology.openRoute, "an open record"), (Topology.deadlineRoute, "a deadline"),
                                  (Topology.Route(exchange: Topology.outputsExchange, routingKey: "job.perm1.final"), "an output"),
                                  (Topology.Route(exchange: "", routingKey: Topology.deadlinesQueue), "anything through the default exchange"),
                                  (Topology.taskRoute, "a task")] {
                let t = try await connect("consumer", url)
                await #expect(throws: TransportError.self, "a consumer published \(what)") { try await t.publish(forged, route) }
                await t.close()
            }
            // What a producer's credentials must not do.
            let t = try await connect("producer", url)
            await #expect(throws: TransportError.self, "a producer consumed tasks") {
                let sub = try await t.subscribe(queue: Topology.tasksQueue, prefetch: 1)
                await sub.cancel()
            }
            await t.close()
            for (route, what) in [(Topology.partialRoute, "a partial"),
                                  (Topology.Route(exchange: Topology.outputsExchange, routingKey: "job.perm1.final"), "an output")] {
                let t = try await connect("producer", url)
                await #expect(throws: TransportError.self, "a producer published \(what)") { try await t.publish(forged, route) }
                await t.close()
            }

            workerRun.cancel()
            aggregatorRun.cancel()
            _ = await workerRun.result
            _ = await aggregatorRun.result
            await watcher.subscription.cancel()
            for t in [producer, consumerT, aggregatorT] { await t.close() }
            _ = try? await AMQPSupport.rabbitmqctl(dir, ["delete_vhost", url.vhost])
        }
    }
}
