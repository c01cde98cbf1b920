// What a consumer remembers of done notices (DoneMessage): which coded layers are decoded, so
// their remaining tasks are dropped unread. Bounded: the oldest entries are forgotten first
// (a forgotten one costs one wasted task, never a wrong answer). Pure value type.

public struct FinishedMiniJobs: Sendable {
    public let capacity: Int
    private var keys: Set<String> = []
    private var order: [String] = []
    private var head = 0

    public init(capacity: Int = 16_384) {
        precondition(capacity >= 1)
        self.capacity = capacity
    }

    static func key(_ job: String, _ layer: Int) -> String { "\(job)\u{0}\(layer)" }

    public mutating func insert(job: String, layer: Int) {
        let k = Self.key(job, layer)
        guard keys.insert(k).inserted else { return }
        if order.count < capacity {
            order.append(k)
        } else {
            keys.remove(order[head])
            order[head] = k
            head = (head + 1) % capacity
        }
    }

    public func contains(job: String, layer: Int) -> Bool { keys.contains(Self.key(job, layer)) }

    public var count: Int { keys.count }
}
