// The end-to-end pipeline scenarios (producer, consumers, aggregator) over AMQPTransport and a
// real RabbitMQ. They use the fixed topology names (sr.tasks, …), so each runs in a vhost of
// its own, created and deleted with rabbitmqctl (needs SR_RABBITMQ_DIR).
import Foundation
import SRAMQP
import SRStore
import Testing
import TransportConformance

extension AMQPIntegration {
    @Suite(.enabled(if: ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"] != nil,
                    "set SR_RABBITMQ_DIR (source the env file of scripts/rabbitmq-start.sh)"),
           .timeLimit(.minutes(10)))
    struct AMQPPipelineTests {
        @Test(arguments: PipelineScenarios.all + InferenceScenarios.all)
        func scenario(_ s: PipelineScenario) async throws {
            let dir = ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"]!
            var url = try AMQPURL(AMQPSupport.url())
            url.vhost = AMQPSupport.name("pipeline")
            for args in [["add_vhost", url.vhost], ["set_permissions", "-p", url.vhost, url.user, ".*", ".*", ".*"]] {
                let (status, output) = try await AMQPSupport.rabbitmqctl(dir, args)
                try #require(status == 0, "rabbitmqctl \(args) failed: \(output)")
            }
            let store = FileManager.default.temporaryDirectory.appendingPathComponent("sr-amqp-store-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: store, withIntermediateDirectories: true)
            let env = PipelineEnvironment(makeTransport: { [url] in
                try await AMQPTransport.connect(url, logger: AMQPSupport.logger)
            }, store: OperandStore(root: store.path))
            let outcome: Result<Void, any Error>
            do {
                try await s.run(env)
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
            try? FileManager.default.removeItem(at: store)
            _ = try? await AMQPSupport.rabbitmqctl(dir, ["delete_vhost", url.vhost])
            try outcome.get()
        }
    }
}
