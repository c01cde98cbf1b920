// rabbitmq-c (Debian: librabbitmq-dev), the AMQP 0-9-1 client. Only the SRAMQP target
// (Sources/Shared/AMQP/AMQPConnection.swift) imports this module.
#ifndef CSRRABBITMQ_SHIM_H
#define CSRRABBITMQ_SHIM_H
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>

// amqp_login is C-variadic, which Swift cannot call: this fixes the variadic tail to
// "no extra client properties" and the SASL method to PLAIN (user + password).
static inline amqp_rpc_reply_t csrrabbitmq_login_plain(
    amqp_connection_state_t state, const char *vhost, int channel_max, int frame_max,
    int heartbeat, const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat,
                      AMQP_SASL_METHOD_PLAIN, user, password);
}
#endif
