// kill -9 of real srconsume and sraggregate processes mid-job, against a real RabbitMQ: the
// job still completes, exactly, with nothing lost. Each test runs in a vhost of its own.
import Foundation
import Logging
import SRAMQP
import SRCore
import SRKernels
import SRProtocol
import SRSubmission
import SRStore
import SRTransport
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

    /// The tasks queue's consumers and unacknowledged messages, as the broker reports them.
    func tasksQueueState(_ pool: Pool) async throws -> (consumers: Int, unacked: Int) {
        let (status, output) = try await AMQPSupport.rabbitmqctl(ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"]!,
            ["-q", "list_queues", "-p", pool.vhost, "name", "consumers", "messages_unacknowledged"])
        guard status == 0 else { return (0, 0) }
        for line in output.split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.count == 3, f[0] == Substring(Topology.tasksQueue) { return (Int(f[1]) ?? 0, Int(f[2]) ?? 0) }
        }
        return (0, 0)
    }

    /// A SIGSTOPped srconsume holds a prefetched task of a coded job and one of an
    /// uncoded job. With two healthy consumers the coded job (Ω = 1.5: 3 tasks per layer, any 2
    /// decode it) completes exactly; the uncoded one cannot, and answers at its deadline with
    /// nothing computed. Deterministic: the stopped consumer is the only one when the two tasks
    /// it holds are published, and the uncoded job's deadline is fired by the test.
    @Test func aStoppedConsumerHoldsBackAnUncodedJobButNotACodedOne() async throws {
        let pool = try await Pool()
        let transport = try await AMQPTransport.connect(pool.url, logger: AMQPSupport.logger)
        var stopped: Process?
        do {
            try await Topology.declare(on: transport)
            _ = try pool.spawn("sraggregate")
            let stalled = try pool.spawn("srconsume", ["--prefetch", "2", "--name", "stalled"])
            stopped = stalled
            let deadline = ContinuousClock.now + .seconds(120)
            while try await tasksQueueState(pool).consumers < 1 {
                try #require(ContinuousClock.now < deadline, "the consumer to be stopped never subscribed")
                try await Task.sleep(for: .milliseconds(50))
            }
            kill(stalled.processIdentifier, SIGSTOP)

            var g = SystemRandomNumberGenerator()
            let a = Matrix(rows: 64, columns: 48, elements: (0..<(64 * 48)).map { _ in Double.random(in: -1..<1, using: &g) })
            let x = Matrix(column: (0..<48).map { _ in Double.random(in: -1..<1, using: &g) })
            let store = OperandStore(root: pool.store)
            let digest = try store.register(a, name: "stall")
            let p = try PartitionVector.fitted(maxMagnitude: a.maxMagnitude, chunks: 2, bits: 6)
            let q = try PartitionVector.fitted(maxMagnitude: x.maxMagnitude, chunks: 2, bits: 6)
            try store.ensureStatistics(digest: digest, partition: p)
            let uncoded = MatVecRequest(operand: .stored(digest: digest, rows: 64, columns: 48), vectors: x, partitionA: p, partitionX: q,
                                        schedule: try .bySignificance(chunksA: 2, chunksX: 2), deadline: .seconds(600), rowBlock: 32,
                                        id: "u\(UInt32.random(in: 0...UInt32.max))")
            var coded = uncoded
            coded.id = "c\(UInt32.random(in: 0...UInt32.max))"
            coded.redundancy = 1.5
            let submitter = JobSubmitter(transport: transport)
            let codedPlan = try submitter.plan(coded), uncodedPlan = try submitter.plan(uncoded)
            #expect(codedPlan.job.codedTasks == 3 && codedPlan.job.blockCount == 2)
            let watcher = try await OutputWatcher.watch([coded.id!, uncoded.id!], on: transport)
            for plan in [codedPlan, uncodedPlan] {
                try await Topology.declareDelayQueue(plan.deadlineQueue, on: transport)
                try await transport.publish(plan.open, Topology.openRoute)
                try await transport.publish(plan.deadline, Topology.delayRoute(plan.deadlineQueue))
            }
            // Row block 0 of layer 0 of each job goes to the stopped consumer (the only one).
            try await transport.publish(codedPlan.tasks[0], Topology.taskRoute)
            try await transport.publish(uncodedPlan.tasks[0], Topology.taskRoute)
            while try await tasksQueueState(pool).unacked < 2 {
                try #require(ContinuousClock.now < deadline, "the stopped consumer did not take its two tasks")
                try await Task.sleep(for: .milliseconds(50))
            }
            for t in codedPlan.tasks.dropFirst() + uncodedPlan.tasks.dropFirst() { try await transport.publish(t, Topology.taskRoute) }
            _ = try pool.spawn("srconsume", ["--name", "healthy-1"])
            _ = try pool.spawn("srconsume", ["--name", "healthy-2"])

            var codedOutputs: [OutputMessage] = []
            while codedOutputs.last?.status != .complete {
                let o = try await next(watcher, within: .seconds(120))
                #expect(o.job == coded.id!, "the uncoded job answered before its deadline: \(o.status) r\(o.resolution)")
                if o.job == coded.id! { codedOutputs.append(o) }
            }
            #expect(codedOutputs.map(\.resolution) == [1, 2, 3])
            checkFinal(codedOutputs.last!, a, x)
            try await submitter.fireDeadline(job: uncoded.id!)
            let stuck = try await next(watcher, within: .seconds(120))
            #expect(stuck.job == uncoded.id! && stuck.status == .deadline && stuck.resolution == 0,
                    "uncoded job: \(stuck.job) \(stuck.status) r\(stuck.resolution)")
            await watcher.subscription.cancel()
        } catch {
            if let stopped { pool.kill9(stopped) }
            await transport.close()
            await pool.finish()
            throw error
        }
        if let stopped { pool.kill9(stopped) }   // a stopped process would never act on SIGTERM
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
