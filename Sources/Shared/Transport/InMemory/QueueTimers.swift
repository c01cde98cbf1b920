// The timers of an in-memory queue: expiry of the messages at its heads (per-message and queue
// TTL, which is how deadline messages fire) and x-expires deletion when unused.

extension BrokerState {
    /// Makes sure a timer wakes by the time the earliest head message expires: a queue with
    /// x-message-ttl and no consumer must dead-letter on time (that is how deadlines fire).
    func armExpiryTimer(_ q: QueueState, _ op: inout BrokerOperation) {
        guard let earliest = q.ready.earliestHeadExpiry else { return }
        // An earlier timer finds nothing expired, re-arms and sleeps again; cheaper than
        // replacing the task on every publish.
        if let armed = q.expiryTimer, armed.deadline <= earliest { return }
        q.expiryTimer?.task.cancel()
        let token = makeID(), name = q.spec.name, id = q.id
        let task = op.broker.startTimer(at: earliest) { state, op in
            guard let q = state.queues[name], q.id == id, q.expiryTimer?.token == token else { return }
            q.expiryTimer = nil
            state.expireHeads(of: q, &op)
            op.touch(q)  // finish() re-arms for the next head
        }
        q.expiryTimer = ScheduledTimer(token: token, deadline: earliest, task: task)
    }

    func expireHeads(of q: QueueState, _ op: inout BrokerOperation) {
        for m in q.ready.removeExpiredHeads(before: op.now) {
            deadLetter(m, from: q, reason: .expired, &op)
        }
    }

    /// x-expires: (re)starts the countdown to deleting an unused queue.
    func armIdleTimer(_ q: QueueState, _ op: inout BrokerOperation) {
        guard let expires = q.spec.expires, q.consumers.isEmpty else { return }
        q.idleTimer?.task.cancel()
        let token = makeID(), name = q.spec.name, id = q.id
        let deadline = op.now + expires
        let task = op.broker.startTimer(at: deadline) { state, op in
            guard let q = state.queues[name], q.id == id, q.idleTimer?.token == token, q.consumers.isEmpty else { return }
            state.deleteQueue(q, &op)  // its messages are lost, as in RabbitMQ
        }
        q.idleTimer = ScheduledTimer(token: token, deadline: deadline, task: task)
    }
}
