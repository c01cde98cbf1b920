// Replaced by the transport conformance suite.
