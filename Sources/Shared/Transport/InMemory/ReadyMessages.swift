// The ready (not yet delivered) messages of one in-memory queue: one FIFO per priority level,
// served highest level first, with requeued messages restored to their original position.

/// A message in a queue, with what the queue needs to deliver, restore or expire it.
struct QueuedMessage {
    var message: Message
    /// The exchange and routing key of the publish that put it in this queue.
    var exchange: String
    var routingKey: String
    var redelivered: Bool
    /// Broker time (see `BrokerClock`) after which it has expired; nil: never.
    var expiresAt: Duration?
    /// Enqueue order in its queue: a requeue puts the message back at this position.
    let sequence: UInt64
    /// Its priority level in its queue (always 0 in a queue without `x-max-priority`).
    let level: Int
}

struct ReadyMessages {
    private var levels: [PriorityLevel]
    /// No level above `top` holds a message, so the highest non-empty level is found by
    /// scanning down from here instead of from the maximum priority.
    private var top = 0
    private(set) var count = 0
    /// How many hold an expiry; zero lets the broker skip expiry work entirely.
    private(set) var expiringCount = 0

    init(levelCount: Int) {
        levels = Array(repeating: PriorityLevel(), count: levelCount)
    }

    var isEmpty: Bool { count == 0 }

    /// Adds at the tail of its level. O(1) amortised.
    mutating func append(_ m: QueuedMessage) {
        levels[m.level].append(m)
        added(m)
    }

    /// Puts a delivered message back where it was. O(1) when it returns to the head of its
    /// level (the usual case: it was delivered before everything still waiting), O(n) otherwise.
    mutating func restore(_ m: QueuedMessage) {
        levels[m.level].insertBySequence(m)
        added(m)
    }

    /// Removes the oldest message of the highest non-empty level. O(1) amortised.
    mutating func popFirst() -> QueuedMessage? {
        guard count > 0 else { return nil }
        while levels[top].isEmpty { top -= 1 }
        let m = levels[top].popFirst()
        removed(m)
        return m
    }

    /// The earliest expiry among the heads of the levels: RabbitMQ expires only at the head of
    /// a queue, so only these can expire now. O(levels).
    var earliestHeadExpiry: Duration? {
        guard expiringCount > 0 else { return nil }
        var earliest: Duration?
        for level in 0...top {
            if let e = levels[level].first?.expiresAt, earliest.map({ e < $0 }) ?? true { earliest = e }
        }
        return earliest
    }

    /// Removes the messages at the heads of the levels that expired before `now`, in the order
    /// they expired.
    mutating func removeExpiredHeads(before now: Duration) -> [QueuedMessage] {
        guard expiringCount > 0 else { return [] }
        var expired: [QueuedMessage] = []
        for level in 0...top {
            while let e = levels[level].first?.expiresAt, e < now {
                let m = levels[level].popFirst()
                removed(m)
                expired.append(m)
            }
        }
        expired.sort { ($0.expiresAt!, $0.sequence) < ($1.expiresAt!, $1.sequence) }
        return expired
    }

    mutating func removeAll() {
        self = ReadyMessages(levelCount: levels.count)
    }

    private mutating func added(_ m: QueuedMessage) {
        count += 1
        if m.expiresAt != nil { expiringCount += 1 }
        top = max(top, m.level)
    }

    private mutating func removed(_ m: QueuedMessage) {
        count -= 1
        if m.expiresAt != nil { expiringCount -= 1 }
    }
}

/// One FIFO: an array with a moving head, so popping is O(1) without a Deque dependency.
/// Popped slots are cleared at once (bodies are freed) and reclaimed when they are the majority.
struct PriorityLevel {
    private var items: [QueuedMessage?] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    var first: QueuedMessage? { isEmpty ? nil : items[head] }

    mutating func append(_ m: QueuedMessage) { items.append(m) }

    /// Precondition: not empty.
    mutating func popFirst() -> QueuedMessage {
        let m = items[head]!
        items[head] = nil
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return m
    }

    mutating func insertBySequence(_ m: QueuedMessage) {
        // First waiting message that is younger than m: m goes just before it.
        var low = head, high = items.count
        while low < high {
            let mid = (low + high) / 2
            if items[mid]!.sequence < m.sequence { low = mid + 1 } else { high = mid }
        }
        if low == head && head > 0 {
            head -= 1
            items[head] = m
        } else {
            items.insert(m, at: low)
        }
    }
}
