// Outputs leave the aggregator through this outbox: the event loop only enqueues them, and one
// publisher task sends whatever has accumulated as one pipelined batch. The loop never waits for
// the broker, so a confirm's round trip never delays every other job's partials.
import SRProtocol
import SRTransport
import Logging
import Synchronization

/// An output on its way out: the message, and what the loop needs to hear back.
struct PendingOutput: Sendable {
    var message: Message
    var routingKey: String
    var job: String
    var status: OutputStatus
    var log: Logger.Message
    var metadata: Logger.Metadata
    /// Set for a job's final output: its confirmation lets the job close (its inputs are acked
    /// only then); its failure has it retried.
    var final: AggregatorService.FinalOutput?
    /// sr.outputs, or sr.done for a done notice.
    var exchange: String = Topology.outputsExchange
    /// What the metrics count of a confirmed output.
    var facts: OutputFacts?
    /// false for an open notice: published with the outputs (before them, in order), but
    /// neither counted nor logged.
    var isOutput = true
    /// A done or progress notice: sent after the outputs, best effort, not counted or logged.
    var isNotice = false

    /// A notice nobody waits for: a done notice to sr.done, a progress notice to sr.outputs.
    static func notice(_ message: Message, job: String, exchange: String, routingKey: String) -> PendingOutput {
        PendingOutput(message: message, routingKey: routingKey, job: job, status: .partial, log: "", metadata: [:],
                      final: nil, exchange: exchange, isOutput: false, isNotice: true)
    }
}

/// A FIFO of pending outputs plus a wake-up signal for the publisher task.
final class OutputOutbox: Sendable {
    private let pending = Mutex<[PendingOutput]>([])
    private let signal: AsyncStream<Void>.Continuation
    let signals: AsyncStream<Void>

    init() {
        (signals, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    func push(_ output: PendingOutput) {
        pending.withLock { $0.append(output) }
        signal.yield()
    }

    /// Everything queued so far, in order.
    func takeAll() -> [PendingOutput] {
        pending.withLock { p in defer { p.removeAll() }; return p }
    }

    /// Ends the publisher task's wait (outputs still queued are not sent: their jobs' inputs
    /// stay unacknowledged, so the next aggregator answers them).
    func finish() { signal.finish() }
}

extension AggregatorService {
    /// The publisher task: sends queued outputs in order, a batch at a time, then counts and
    /// logs each one and tells the loop about finals (`report`).
    func publishOutputs(_ outbox: OutputOutbox, report: @escaping @Sendable (Event) -> Void) async {
        for await _ in outbox.signals {
            let all = outbox.takeAll()
            // Notices go after the outputs, in a call of their own and best effort: a broker
            // refusing them (an old permission set) must not fail the outputs.
            let notices = all.filter(\.isNotice)
            let batch = all.filter { !$0.isNotice }
            defer { if !notices.isEmpty { publishNotices(notices) } }
            guard !batch.isEmpty else { continue }
            do {
                try await transport.publish(batch.map { Publication($0.message, exchange: $0.exchange, routingKey: $0.routingKey) })
            } catch {
                logger.error("could not publish outputs; finals will be retried", metadata: ["outputs": "\(batch.count)", "error": "\(error)"])
                for o in batch { if let final = o.final { report(.finalFailed(o.job, final)) } }
                continue
            }
            for o in batch where o.isOutput {
                if let facts = o.facts { metrics.published(facts, status: o.status) }
                counters.withLock {
                    $0.refinements += 1
                    if o.status == .complete { $0.completed += 1 }
                    if o.status == .deadline { $0.deadlines += 1 }
                }
                var all = o.metadata
                all["job.id"] = "\(o.job)"
                all["status"] = "\(o.status.rawValue)"
                logger.info(o.log, metadata: all)
                if o.final != nil { report(.finalPublished(o.job)) }
            }
        }
    }

    /// Sends done and progress notices without waiting for their confirms (nothing depends on them).
    func publishNotices(_ notices: [PendingOutput]) {
        let transport = self.transport, logger = self.logger
        Task {
            do {
                try await transport.publish(notices.map { Publication($0.message, exchange: $0.exchange, routingKey: $0.routingKey) })
            } catch {
                logger.debug("notices not published", metadata: ["error": "\(error)"])
            }
        }
    }
}
