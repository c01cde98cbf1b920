// The objects an in-memory broker is made of: exchanges with their bindings, queues with their
// consumers and timers, connections. Reference types, only ever touched under the broker's lock.

typealias DeliveryContinuation = AsyncThrowingStream<Delivery, any Error>.Continuation

final class ExchangeState {
    let spec: ExchangeSpec
    var bindings: [Binding] = []

    struct Binding {
        let queue: String
        let key: String
        /// Set for topic exchanges: the key parsed once at bind time.
        let pattern: TopicPattern?
    }

    init(spec: ExchangeSpec) { self.spec = spec }
}

final class QueueState {
    /// Distinguishes this queue from a later one of the same name (timers, consumers).
    let id: UInt64
    /// As declared, with the broker's name when the declaration left it empty.
    let spec: QueueSpec
    /// The declaring connection of an exclusive queue.
    let owner: UInt64?
    var ready: ReadyMessages
    /// In subscription order; deliveries go round-robin among those with prefetch room.
    var consumers: [ConsumerState] = []
    var roundRobin = 0
    var nextSequence: UInt64 = 0
    /// Wakes when the earliest message at a head expires.
    var expiryTimer: ScheduledTimer?
    /// x-expires: deletes the queue when it stays unused this long.
    var idleTimer: ScheduledTimer?
    /// Set while queued for dispatch at the end of the current operation.
    var isDirty = false

    init(id: UInt64, spec: QueueSpec, owner: UInt64?) {
        self.id = id
        self.spec = spec
        self.owner = owner
        ready = ReadyMessages(levelCount: Int(spec.maxPriority ?? 0) + 1)
    }

    /// The level a message waits in: its priority capped at x-max-priority (RabbitMQ treats
    /// higher priorities as the maximum), absent priority = 0, all 0 without x-max-priority.
    func level(of message: Message) -> Int {
        guard let maxPriority = spec.maxPriority else { return 0 }
        return Int(min(message.priority ?? 0, maxPriority))
    }

    /// The next consumer in round-robin order that may take another delivery.
    func nextConsumerWithRoom() -> ConsumerState? {
        let n = consumers.count
        for step in 0..<n {
            let i = (roundRobin + step) % n
            if consumers[i].hasRoom {
                roundRobin = (i + 1) % n
                return consumers[i]
            }
        }
        return nil
    }

    func remove(_ consumer: ConsumerState) {
        guard let i = consumers.firstIndex(where: { $0 === consumer }) else { return }
        consumers.remove(at: i)
        if roundRobin > i { roundRobin -= 1 }
        if roundRobin >= consumers.count { roundRobin = 0 }
    }

    func cancelTimers() {
        expiryTimer?.task.cancel()
        expiryTimer = nil
        idleTimer?.task.cancel()
        idleTimer = nil
    }
}

/// A timer task and what identifies it, so a timer that fires after being replaced does nothing.
struct ScheduledTimer {
    let token: UInt64
    let deadline: Duration
    let task: Task<Void, Never>
}

final class ConsumerState {
    /// Also the generation of its delivery tags: a tag from another consumer is never valid here.
    let id: UInt64
    let queue: QueueState
    let connection: UInt64
    /// At most this many unacknowledged deliveries; 0 = unlimited.
    let prefetch: Int
    let continuation: DeliveryContinuation
    var nextTag: UInt64 = 1
    var unacked: [UInt64: QueuedMessage] = [:]
    /// The stream stopped accepting deliveries (its reader was cancelled); the cancellation of
    /// this consumer is on its way.
    var isTerminated = false

    init(id: UInt64, queue: QueueState, connection: UInt64, prefetch: Int, continuation: DeliveryContinuation) {
        self.id = id
        self.queue = queue
        self.connection = connection
        self.prefetch = prefetch
        self.continuation = continuation
    }

    var hasRoom: Bool { !isTerminated && (prefetch == 0 || unacked.count < prefetch) }
}

final class ConnectionState {
    var consumers: Set<UInt64> = []
    /// Exclusive queues it declared: deleted when it closes.
    var exclusiveQueues: Set<String> = []
}
