// How far a job's layers are, for a watcher on a terminal: tasks taken per layer, published by
// the aggregator only for jobs that ask (`progressMs` in the open record), at most that often.

import SRCore
import SRTransport

/// From the aggregator to `sr.outputs` under `job.<id>.progress` (transient, best effort).
/// Body: per layer (one-shot jobs: one), two UInt32 LE: the row-block tasks taken so far and
/// the tasks the layer needs (K; coded layers issue more, any K of which do). Headers: job,
/// `sr-elapsed-ms`. Watchers that do not know the kind skip it, as they skip any unknown kind.
public struct ProgressMessage: Sendable, Equatable {
    public struct Layer: Sendable, Equatable {
        public var done: Int
        public var needed: Int
        public init(done: Int, needed: Int) {
            self.done = done
            self.needed = needed
        }
    }

    public var job: String
    public var elapsedMs: Double
    public var layers: [Layer]

    public static let kind = "progress"
    /// More layers than any schedule has (chunks of A × chunks of x).
    public static let maxLayers = WireLimits.maxChunks * WireLimits.maxChunks

    public init(job: String, elapsedMs: Double, layers: [Layer]) {
        self.job = job
        self.elapsedMs = elapsedMs
        self.layers = layers
    }

    public var routingKey: String { Topology.progressKey(job: job) }

    public func encode() -> Message {
        .wire(kind: Self.kind, headers: [Header.job: .string(job), Header.elapsed: .double(elapsedMs)],
              body: LittleEndian.bytes(layers.flatMap { [UInt32(clamping: $0.done), UInt32(clamping: $0.needed)] }),
              messageID: "\(job)/progress", persistent: false)
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.jobID()
        elapsedMs = try h.double(Header.elapsed)
        let body = message.body
        guard body.count % 8 == 0, (1...Self.maxLayers).contains(body.count / 8) else {
            throw WireError("a progress body holds 1…\(Self.maxLayers) (done, needed) pairs of UInt32, not \(body.count) bytes")
        }
        let counts = LittleEndian.uint32s(body[...])
        layers = stride(from: 0, to: counts.count, by: 2).map { Layer(done: Int(counts[$0]), needed: Int(counts[$0 + 1])) }
        guard layers.allSatisfy({ $0.needed >= 1 && $0.done <= $0.needed }) else {
            throw WireError("progress of job \(job): every layer needs ≥ 1 task and has done ≤ needed")
        }
    }
}
