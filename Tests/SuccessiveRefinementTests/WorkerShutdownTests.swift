// A consumer stopped gracefully finishes the task in hand — publishes its partial and acks it —
// instead of returning it to the queue to be computed a second time.
import Foundation
import Logging
import ServiceLifecycle
import Testing
@testable import SRCore
@testable import SRProtocol
@testable import SRWorker
import SRSubmission
@testable import SRStore
@testable import SRTransport

@Suite struct WorkerShutdownTests {
    @Test func gracefulShutdownFinishesTheTaskInHand() async throws {
        let broker = InMemoryBroker()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sr-stop-\(UUID().uuidString)").path
        defer {
            broker.shutdown()
            try? FileManager.default.removeItem(atPath: root)
        }
        let store = OperandStore(root: root)
        let producer = InMemoryTransport(broker: broker)
        try await Topology.declare(on: producer)
        // A cold, large registered matrix: the first task loads, verifies and splits it, long
        // enough to be certainly in hand when the shutdown arrives. The deadline is an hour away:
        // one that passed while a loaded machine got there would have the task skipped.
        var g = SplitMix64(seed: 9)
        let n = 1024
        let a = Matrix(rows: n, columns: n, elements: (0..<(n * n)).map { _ in Double.random(in: -1..<1, using: &g) })
        let x = Matrix(column: (0..<n).map { _ in Double.random(in: -1..<1, using: &g) })
        let digest = try store.register(a, name: nil)
        let p = try PartitionVector.fitted(maxMagnitude: 1, chunks: 2, bits: 6)
        let request = MatVecRequest(operand: .stored(digest: digest, rows: n, columns: n), vectors: x, partitionA: p, partitionX: p,
                                    schedule: try .bySignificance(chunksA: 2, chunksX: 2), deadline: .seconds(3_600), rowBlock: n, id: "stop")
        let plan = try JobSubmitter(transport: producer).plan(request)
        try await producer.publish(plan.tasks[0], Topology.taskRoute)

        var logger = Logger(label: "worker")
        logger.logLevel = .critical
        let worker = TaskWorker(transport: InMemoryTransport(broker: broker), store: store, configuration: .init(), logger: logger)
        let group = ServiceGroup(services: [worker], gracefulShutdownSignals: [], logger: logger)
        let running = Task { try await group.run() }
        // In hand: no longer ready in the queue (bounded wait on the event).
        let limit = ContinuousClock.now + .seconds(120)
        while try await producer.messageCount(queue: Topology.tasksQueue) > 0 {
            try #require(ContinuousClock.now < limit, "the worker never took the task")
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(worker.snapshot.computed == 0, "the task finished before the shutdown; the test proves nothing")
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(worker.snapshot.computed == 1)
        #expect(try await producer.messageCount(queue: Topology.partialsQueue) == 1, "the partial was not published")
        #expect(try await producer.messageCount(queue: Topology.tasksQueue) == 0, "the task went back to the queue")
    }
}
