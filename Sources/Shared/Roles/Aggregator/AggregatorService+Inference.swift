// What the aggregator's loop does for inference jobs' actions: tasks for undecided samples out
// (retried while their job is open), per-sample refinements and final answers out. The jobs'
// bookkeeping is the job table's (JobTable+Inference.swift).
import SRAggregation
import SRProtocol
import SRTransport
import Logging

extension AggregatorService.Core {
    /// Publishes a resolution's tasks as one batch (confirms awaited together: one round trip);
    /// behind tasks still unsent, they queue instead, keeping the order.
    mutating func publishTasks(_ id: String, _ tasks: [Message], _ now: Int64) async {
        guard !table.hasUnsentTasks(id) else { return await run(.tasksUnsent(job: id, tasks), now) }
        do {
            try await service.transport.publish(tasks.map { Publication($0, Topology.taskRoute) })
        } catch {
            // Some may have gone out: sending them again is harmless (partials are de-duplicated).
            logger.error("could not publish inference tasks; will retry", metadata: ["job.id": "\(id)", "error": "\(error)"])
            await run(.tasksUnsent(job: id, tasks), now)
        }
    }

    func send(_ task: Message, job: String) async -> Bool {
        do {
            try await service.transport.publish(task, Topology.taskRoute)
            return true
        } catch {
            logger.error("could not publish an inference task; will retry", metadata: ["job.id": "\(job)", "error": "\(error)"])
            return false
        }
    }

    /// Queues the output for the publisher task, which logs one line once it is confirmed.
    func emit(_ output: InferenceOutput) {
        let message: Message
        do { message = try output.encode() } catch {
            // JSON of plain numbers and strings: not expected to fail; the deadline path retries.
            logger.error("could not encode an inference output", metadata: ["job.id": "\(output.job)", "error": "\(error)"])
            return
        }
        var metadata: Logger.Metadata = [
            "resolution": "\(output.resolution)/\(output.resolutions)", "elapsed_ms": "\(Int(output.elapsedMs))",
            "samples": "\(output.answers.count)", "decided": "\(output.answers.count(where: \.decided))",
        ]
        if output.status != .partial {
            metadata["unanswered"] = "\(output.answers.count { $0.resolution == 0 })"
            metadata["skipped"] = "\(output.skipped)"
        }
        if let late = output.lateMs { metadata[late >= 0 ? "late_ms" : "early_ms"] = "\(Int(abs(late)))" }
        publishOutput(message, routingKey: output.routingKey, job: output.job, status: output.status,
                      log: "inference refinement", metadata: metadata, final: output.status == .partial ? nil : .inference(output),
                      facts: OutputFacts(kind: "infer", resolution: output.answers.map(\.resolution).max() ?? 0,
                                         elapsedMs: output.elapsedMs, lateMs: output.lateMs))
    }
}
