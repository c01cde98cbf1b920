// The connection's thread, reading: frames as they come (deliveries assembled from method,
// header and body frames; publisher confirms; channel and connection closes; flow control).
internal import CSRRabbitMQ
import Foundation
import SRTransport
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Loop {
    /// Reads whatever frames are available without blocking (and services heartbeats).
    func readFrames() {
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        var frame = amqp_frame_t()
        for _ in 0..<1024 {
            guard let c = conn else { return }
            let status = amqp_simple_wait_frame_noblock(c, &frame, &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return }
            if status != AMQP_STATUS_OK.rawValue {
                connectionLost(.library(status: status, reason: nil), while: "reading from the connection")
                return
            }
            dispatch(frame)
            if let c = conn { amqp_maybe_release_buffers(c) }
        }
    }

    private func dispatch(_ frame: amqp_frame_t) {
        let channel = frame.channel
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            handleMethod(frame.payload.method, channel: channel)
        case AMQP_FRAME_HEADER:
            guard var partial = contents[channel] else { return }
            if let decoded = frame.payload.properties.decoded {
                partial.message = decodeProperties(decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee)
            } else {
                partial.message = Message(persistent: false)
            }
            partial.expected = Int(frame.payload.properties.body_size)
            partial.body.reserveCapacity(min(partial.expected, 1 << 28))
            contents[channel] = partial
            if partial.expected == 0 { complete(channel) }
        case AMQP_FRAME_BODY:
            guard contents[channel]?.message != nil else { return }
            let fragment = frame.payload.body_fragment
            if fragment.len > 0, let bytes = fragment.bytes {
                contents[channel]!.body.append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: fragment.len))
            }
            if contents[channel]!.body.count >= contents[channel]!.expected { complete(channel) }
        default:
            break
        }
    }

    private func handleMethod(_ method: amqp_method_t, channel: UInt16) {
        switch method.id {
        case AMQP_BASIC_DELIVER_METHOD:
            let d = method.decoded!.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            contents[channel] = PartialContent(target: .delivery(
                tag: d.delivery_tag, redelivered: d.redelivered != 0,
                exchange: d.exchange.swiftString, routingKey: d.routing_key.swiftString))
        case AMQP_BASIC_RETURN_METHOD:
            contents[channel] = PartialContent(target: .returned)
        case AMQP_BASIC_ACK_METHOD where channel == Loop.publishChannel:
            let a = method.decoded!.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            perform(state.confirm(a.delivery_tag, multiple: a.multiple != 0, error: nil))
        case AMQP_BASIC_NACK_METHOD where channel == Loop.publishChannel:
            let n = method.decoded!.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            perform(state.confirm(n.delivery_tag, multiple: n.multiple != 0, error: state.rejectedError))
        case AMQP_BASIC_CANCEL_METHOD:
            // The broker cancelled a consumer: its queue was deleted (or failed over).
            perform(state.cancelledByBroker(channel: channel))
        case AMQP_CHANNEL_CLOSE_METHOD:
            let m = method.decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            let failure = AMQPFailure.channelClosed(code: m.reply_code, text: m.reply_text.swiftString)
            guard let c = conn else { return }
            var ok = amqp_channel_close_ok_t(dummy: 0)
            let status = amqp_send_method(c, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
            let action = channel == Loop.publishChannel ? "publishing" : channel == Loop.controlChannel ? "declaring" : "consuming"
            let error = transportError(failure, url: url, phase: .operation(action))
            logger.debug("RabbitMQ closed a channel", metadata: ["amqp.channel": "\(channel)", "error": "\(error)"])
            channelClosed(channel, failure: failure, error: error)
            if status != AMQP_STATUS_OK.rawValue {
                connectionLost(.library(status: status, reason: nil), while: "answering channel.close")
            }
        case AMQP_CONNECTION_CLOSE_METHOD:
            let m = method.decoded!.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            connectionLost(.connectionClosed(code: m.reply_code, text: m.reply_text.swiftString), while: "connected")
        case AMQP_CONNECTION_BLOCKED_METHOD:
            let m = method.decoded!.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            logger.warning("RabbitMQ blocked publishing (resource alarm)", metadata: ["reason": "\(m.reason.swiftString)"])
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            logger.info("RabbitMQ unblocked publishing")
        default:
            logger.debug("ignoring an AMQP method", metadata: ["amqp.method": "\(method.id)", "amqp.channel": "\(channel)"])
        }
    }

    private func complete(_ channel: UInt16) {
        guard let partial = contents.removeValue(forKey: channel), var message = partial.message else { return }
        guard case .delivery(let tag, let redelivered, let exchange, let routingKey) = partial.target else {
            return  // basic.return: we never publish with mandatory, nothing waits for it
        }
        guard let (id, deliveryTag) = state.delivered(tag, channel: channel), let stream = streams[id] else { return }
        message.body = partial.body
        if Trace.enabled, let job = message.headers[Trace.jobHeader]?.stringValue { Trace.mark(job, "wire.in \(exchange)") }
        let delivery = Delivery(message: message, exchange: exchange, routingKey: routingKey,
                                redelivered: redelivered, tag: deliveryTag)
        if case .terminated = stream.yield(delivery) {
            cancelSubscription(id)
        }
    }
}
