// The pipeline scenarios (Tests/TransportConformance/PipelineScenarios.swift and
// InferenceScenarios.swift) on the embedded in-memory transport; the integration tests run the
// same ones on RabbitMQ.
import Foundation
import Testing
import TransportConformance
@testable import SRStore
@testable import SRTransport

@Suite struct PipelineInMemoryTests {
    @Test(arguments: PipelineScenarios.all + InferenceScenarios.all)
    func scenario(_ scenario: PipelineScenario) async throws {
        let broker = InMemoryBroker()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sr-pipe-\(UUID().uuidString)").path
        defer {
            broker.shutdown()
            try? FileManager.default.removeItem(atPath: root)
        }
        let env = PipelineEnvironment(makeTransport: { InMemoryTransport(broker: broker) }, store: OperandStore(root: root))
        try await scenario.run(env)
    }
}
