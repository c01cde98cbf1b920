// The one error type of network refinement: tensors that do not fit the manifest, partitions
// of the wrong length, networks whose exact values would not fit Int128, bad upgrade requests.

/// An error from quantizing or evaluating a network at a resolution. `description` names the
/// layer, tensor or sample and says what to do. Partition problems of single values (out of
/// range, not finite) surface as `LayeringError` from `PartitionVector`.
public struct RefinementError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of problem this is; stable for programs to match on.
    public enum Code: String, Sendable, Equatable {
        /// A layer names a tensor that was not supplied.
        case missingTensor
        /// A tensor's or an input's shape does not fit the layer that uses it.
        case shapeMismatch
        /// A partition with the wrong number of chunks, too many bits, or none for the input.
        case invalidPartition
        /// A layer sequence the exact evaluator cannot run (no linear layer, layers after a head).
        case unsupportedNetwork
        /// Exact values of this network could exceed Int128.
        case wouldOverflow
        /// A resolution outside 0…R, or an upgrade past R.
        case invalidResolution
        /// An unknown, duplicated or frozen sample in an upgrade.
        case invalidSample
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
