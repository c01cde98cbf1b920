// A notice that a coded mini-job is decoded: its remaining coded tasks are worth nothing.
import SRTransport

/// From the aggregator to every consumer (fanout `sr.done`, transient, empty body): layer
/// `sr-layer` of job `sr-job` is complete, so a consumer drops that layer's tasks unread
/// instead of computing them (the paper's purge of the extra coded tasks, METHOD.md §4). Best
/// effort: a consumer that misses it computes a task whose partial the aggregator ignores.
public struct DoneMessage: Sendable, Equatable {
    public var job: String
    public var layer: Int

    public static let kind = "done"

    public init(job: String, layer: Int) {
        self.job = job
        self.layer = layer
    }

    public func encode() -> Message {
        .wire(kind: Self.kind, headers: [Header.job: .string(job), Header.layer: .int(Int64(layer))], body: [],
              messageID: "\(job)/L\(layer)/done", persistent: false)
    }

    public init(decoding message: Message) throws(WireError) {
        let h = try HeaderReader(message, kind: Self.kind)
        job = try h.jobID()
        layer = try h.count(Header.layer, max: 1 << 16)
    }
}
