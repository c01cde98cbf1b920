// Fails loudly when CI forgot to start the broker, instead of silently skipping everything.
import Testing

@Suite struct BrokerPresenceTests {
    @Test(.enabled(if: BrokerEnvironment.required, "SR_REQUIRE_BROKER is not set; run scripts/test.sh for integration tests"))
    func brokerURLIsSet() {
        #expect(BrokerEnvironment.url != nil, "SR_REQUIRE_BROKER=1 but SR_AMQP_URL is not set: start one with scripts/rabbitmq-start.sh")
    }
}
