// How messages move through an in-memory broker: publish and routing into queues, delivery to
// consumers under prefetch, ack/reject/cancel, and the end-of-operation dispatch.

extension BrokerState {
    func publish(_ message: Message, exchange: String, routingKey: String, connection: UInt64,
                 _ op: inout BrokerOperation) throws(TransportError) {
        try checkOpen(connection)
        if let expiration = message.expiration, expiration < .zero {
            throw TransportError(.precondition, "A message's expiration must not be negative (RabbitMQ: 406 PRECONDITION_FAILED).")
        }
        for q in try route(exchange: exchange, key: routingKey) {
            enqueue(message, exchange: exchange, routingKey: routingKey, into: q, &op)
        }
    }

    func enqueue(_ message: Message, exchange: String, routingKey: String, into q: QueueState,
                 _ op: inout BrokerOperation) {
        // The smaller of the message's expiration and the queue's TTL applies.
        let ttl: Duration? = switch (message.expiration, q.spec.messageTTL) {
        case let (m?, t?): min(m, t)
        case let (m, t): m ?? t
        }
        q.ready.append(QueuedMessage(
            message: message, exchange: exchange, routingKey: routingKey, redelivered: false,
            expiresAt: ttl.map { op.now + $0 }, sequence: q.nextSequence, level: q.level(of: message)))
        q.nextSequence += 1
        op.touch(q)
    }

    func messageCount(queue name: String, connection: UInt64, _ op: inout BrokerOperation) throws(TransportError) -> Int {
        try checkOpen(connection)
        guard let q = queues[name] else { throw Self.noQueue(name) }
        try checkAccess(q, connection)
        expireHeads(of: q, &op)
        armIdleTimer(q, &op)  // like RabbitMQ's passive declare, a use of the queue
        return q.ready.count
    }

    func subscribe(queue name: String, prefetch: Int, connection: UInt64, continuation: DeliveryContinuation,
                   _ op: inout BrokerOperation) throws(TransportError) -> UInt64 {
        try checkOpen(connection)
        guard prefetch >= 0 else {
            throw TransportError(.precondition, "prefetch must be 0 (unlimited) or positive, not \(prefetch).")
        }
        guard let q = queues[name] else { throw Self.noQueue(name) }
        try checkAccess(q, connection)
        let consumer = ConsumerState(id: makeID(), queue: q, connection: connection, prefetch: prefetch,
                                     continuation: continuation)
        consumers[consumer.id] = consumer
        connections[connection]?.consumers.insert(consumer.id)
        q.consumers.append(consumer)
        q.idleTimer?.task.cancel()  // a queue with consumers is in use (x-expires)
        q.idleTimer = nil
        op.touch(q)
        return consumer.id
    }

    /// Stops the consumer: its unacked deliveries go back to their original positions marked
    /// redelivered, its stream finishes, and its queue is deleted if auto-delete and now unused.
    func cancel(consumer id: UInt64, _ op: inout BrokerOperation) {
        guard let consumer = consumers.removeValue(forKey: id) else { return }
        connections[consumer.connection]?.consumers.remove(id)
        op.finished.append(consumer.continuation)
        let q = consumer.queue
        q.remove(consumer)
        for var m in consumer.unacked.values {
            m.redelivered = true
            q.ready.restore(m)
        }
        consumer.unacked = [:]
        guard queues[q.spec.name] === q else { return }
        if q.consumers.isEmpty {
            if q.spec.autoDelete {
                deleteQueue(q, &op)
                return
            }
            armIdleTimer(q, &op)
        }
        op.touch(q)
    }

    /// Stale or unknown tags are ignored: their message was already requeued or settled.
    func ack(consumer id: UInt64, tag: DeliveryTag, _ op: inout BrokerOperation) {
        guard tag.generation == id, let consumer = consumers[id],
              consumer.unacked.removeValue(forKey: tag.value) != nil else { return }
        if !consumer.queue.ready.isEmpty { op.touch(consumer.queue) }  // room for another delivery
    }

    func reject(consumer id: UInt64, tag: DeliveryTag, requeue: Bool, _ op: inout BrokerOperation) {
        guard tag.generation == id, let consumer = consumers[id],
              var m = consumer.unacked.removeValue(forKey: tag.value) else { return }
        if requeue {
            m.redelivered = true
            consumer.queue.ready.restore(m)
        } else {
            deadLetter(m, from: consumer.queue, reason: .rejected, &op)
        }
        op.touch(consumer.queue)
    }

    /// Hands ready messages to consumers with room, round-robin, highest priority first;
    /// a message found expired on its way out is dead-lettered instead.
    private func dispatch(_ q: QueueState, _ op: inout BrokerOperation) {
        while !q.ready.isEmpty, let consumer = q.nextConsumerWithRoom(), let m = q.ready.popFirst() {
            if let expiresAt = m.expiresAt, expiresAt < op.now {
                deadLetter(m, from: q, reason: .expired, &op)
                continue
            }
            let tag = consumer.nextTag
            consumer.nextTag += 1
            let delivery = Delivery(message: m.message, exchange: m.exchange, routingKey: m.routingKey,
                                    redelivered: m.redelivered, tag: DeliveryTag(generation: consumer.id, value: tag))
            // Yield under the lock so one subscription sees the queue's order.
            if case .terminated = consumer.continuation.yield(delivery) {
                // Its reader is gone; the stream's termination handler cancels the consumer.
                consumer.isTerminated = true
                q.ready.restore(m)
                continue
            }
            consumer.unacked[tag] = m
        }
    }

    /// Ends an operation: dispatches every queue it touched (dispatching may dead-letter into
    /// further queues, which are then dispatched too) and re-arms their expiry timers.
    func finish(_ op: inout BrokerOperation) {
        var i = 0
        while i < op.dirty.count {
            let q = op.dirty[i]
            i += 1
            q.isDirty = false
            guard queues[q.spec.name] === q else { continue }
            dispatch(q, &op)
            armExpiryTimer(q, &op)
        }
        op.dirty = []
    }
}
