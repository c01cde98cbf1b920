// kill -9 of real srconsume and sraggregate processes mid-job, against a real RabbitMQ: the
// job still completes, exactly, with nothing lost. Each test runs in a vhost of its own.
import Foundation
import Logging
import SuccessiveRefinement
import Testing

@Suite(.enabled(if: BrokerEnvironment.url != nil && ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"] != nil
                && Executables.available, "needs SR_AMQP_URL, SR_RABBITMQ_DIR and the built executables (scripts/test.sh)"),
       .serialized, .timeLimit(.minutes(10)))
struct ProcessKillTests {
    /// A vhost, a store and the processes of one test; everything is cleaned up by `finish`.
    final class Pool: @unchecked Sendable {
        let url: String
        let vhost: String
        let store: String
        let dir: String
        var processes: [Process] = []

        init() async throws {
            let rabbit = ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"]!
            let base = try AMQPURL(AMQPSupport.url())
            vhost = AMQPSupport.name("kill")
            for args in [["add_vhost", vhost], ["set_permissions", "-p", vhost, base.user, ".*", ".*", ".*"]] {
                let (status, output) = try await AMQPSupport.rabbitmqctl(rabbit, args)
                try #require(status == 0, "rabbitmqctl \(args): \(output)")
            }
            url = "amqp://\(base.user):\(base.password)@\(base.host):\(base.port)/\(vhost)"
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("sr-kill-\(UUID().uuidString)").path
            store = dir + "/store"
            try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        }

        /// Starts an executable of this package with the pool's broker and store.
        func spawn(_ name: String, _ args: [String] = []) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Executables.binDir + "/" + name)
            p.arguments = args
            var env = ProcessInfo.processInfo.environment
            env["SR_AMQP_URL"] = url
            env["SR_STORE"] = store
            env["SR_LOG_LEVEL"] = "warning"
            p.environment = env
            let log = dir + "/\(name)-\(processes.count).log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            p.standardOutput = FileHandle(forWritingAtPath: log)
            p.standardError = p.standardOutput
            try p.run()
            processes.append(p)
            return p
        }

        func kill9(_ p: Process) {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }

        func finish() async {
            for p in processes where p.isRunning { kill(p.processIdentifier, SIGTERM) }
            for p in processes { p.waitUntilExit() }
            _ = try? await AMQPSupport.rabbitmqctl(ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"]!, ["delete_vhost", vhost])
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// A registered matrix big enough that a job has many tasks (so "mid-job" is real).
    func job(_ pool: Pool, transport: any Transport, deadline: Duration) throws -> (MatVecRequest, Matrix<Double>, Matrix<Double>) {
        var g = SystemRandomNumberGenerator()
        let a = Matrix(rows: 2048, columns: 256, elements: (0..<(2048 * 256)).map { _ in Double.random(in: -1..<1, using: &g) })
        let x = Matrix(column: (0..<256).map { _ in Double.random(in: -1..<1, using: &g) })
        let store = OperandStore(root: pool.store)
        let digest = try store.register(a, name: "kill")
        let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: 3, bits: 6)
        let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: 3, bits: 6)
        try store.ensureStatistics(digest: digest, partition: p)   // the aggregator reads them there
        let request = MatVecRequest(operand: .stored(digest: digest, rows: a.rows, columns: a.columns), vectors: x, partitionA: p, partitionX: q,
                                    schedule: try .bySignificance(chunksA: 3, chunksX: 3), deadline: deadline, rowBlock: 8,
                                    id: "k\(UInt32.random(in: 0...UInt32.max))")
        return (request, a, x)
    }

    func next(_ watcher: OutputWatcher, within limit: Duration) async throws -> OutputMessage {
        try await withThrowingTaskGroup(of: OutputMessage?.self) { group in
            group.addTask { try await watcher.next() }
            group.addTask { try await Task.sleep(for: limit); return nil }
            let first = try await group.next()!
            group.cancelAll()
            guard let first else { throw TransportError(.closed, "no output within \(limit)") }
            return first
        }
    }

    func checkFinal(_ o: OutputMessage, _ a: Matrix<Double>, _ x: Matrix<Double>) {
        let exact = OneShotProduct.product(a, x)
        for k in 0..<a.rows {
            let slack = 1e-9 * (1 + abs(exact[k, 0]))
            #expect(abs(exact[k, 0] - o.values[k, 0]) <= o.bound[k, 0] + slack, "row \(k) outside its bound")
        }
    }

    @Test func consumerKilledMidJobStillCompletes() async throws {
        let pool = try await Pool()
        let transport = try await AMQPTransport.connect(pool.url, logger: AMQPSupport.logger)
        do {
            try await Topology.declare(on: transport)
            _ = try pool.spawn("sraggregate")
            let victim = try pool.spawn("srconsume", ["--prefetch", "2", "--name", "victim"])
            let (request, a, x) = try job(pool, transport: transport, deadline: .seconds(600))
            let watcher = try await OutputWatcher.watch([request.id!], on: transport)
            _ = try await JobSubmitter(transport: transport).submit(request)
            let first = try await next(watcher, within: .seconds(120))
            #expect(first.status == .partial, "the job finished before the kill; the test proves nothing")
            pool.kill9(victim)
            _ = try pool.spawn("srconsume", ["--name", "survivor"])
            var outputs = [first]
            while outputs.last!.status == .partial { outputs.append(try await next(watcher, within: .seconds(120))) }
            #expect(outputs.last!.status == .complete)
            #expect(outputs.map(\.resolution) == Array(1...5), "resolutions \(outputs.map(\.resolution))")
            checkFinal(outputs.last!, a, x)
            await watcher.subscription.cancel()
        } catch {
            await transport.close()
            await pool.finish()
            throw error
        }
        await transport.close()
        await pool.finish()
    }

    @Test func aggregatorKilledMidJobCompletesAfterRestart() async throws {
        let pool = try await Pool()
        let transport = try await AMQPTransport.connect(pool.url, logger: AMQPSupport.logger)
        do {
            try await Topology.declare(on: transport)
            let aggregator = try pool.spawn("sraggregate")
            _ = try pool.spawn("srconsume")
            let (request, a, x) = try job(pool, transport: transport, deadline: .seconds(600))
            let watcher = try await OutputWatcher.watch([request.id!], on: transport)
            _ = try await JobSubmitter(transport: transport).submit(request)
            let first = try await next(watcher, within: .seconds(120))
            #expect(first.status == .partial, "the job finished before the kill; the test proves nothing")
            pool.kill9(aggregator)
            _ = try pool.spawn("sraggregate")
            // The restarted aggregator rebuilds the job from redelivered inputs; it may publish
            // earlier resolutions again (outputs are at-least-once).
            var last = first
            while last.status == .partial { last = try await next(watcher, within: .seconds(120)) }
            #expect(last.status == .complete)
            checkFinal(last, a, x)
            await watcher.subscription.cancel()
        } catch {
            await transport.close()
            await pool.finish()
            throw error
        }
        await transport.close()
        await pool.finish()
    }

    /// docs/WIRE.md is enough for a third-party client: scripts/pika_submit.py submits a job with
    /// an inline matrix using pika and numpy only, and checks every output against its bound.
    @Test(.enabled(if: AMQPSupport.hasPika, "python3 with pika and numpy is needed (scripts/install-system-deps.sh installs them)"))
    func aPythonPikaClientSubmitsAJobAndReadsItsOutputs() async throws {
        let pool = try await Pool()
        do {
            _ = try pool.spawn("sraggregate")
            _ = try pool.spawn("srconsume")
            let script = Executables.root.appendingPathComponent("scripts/pika_submit.py").path
            let (status, output) = try await AMQPSupport.run("/usr/bin/env", ["python3", script, pool.url, "--n", "48", "--chunks", "3"],
                                                              timeout: .seconds(60))
            #expect(status == 0, "pika_submit.py failed:\n\(output)")
            let lines = output.split(separator: "\n").filter { $0.hasPrefix("{") }
            #expect(lines.count == 5, "expected 5 refinements:\n\(output)")
            #expect(lines.last?.contains("\"status\": \"complete\"") == true, "\(output)")
        } catch {
            await pool.finish()
            throw error
        }
        await pool.finish()
    }
}
