// The one error type of the ONNX importer: a stable code for programs and a message for people
// that names the file, the node (its name and operator type) and what to do about it.
import SRNeural

/// Why an ONNX file could not become a model. `description` starts with the file (or
/// `<memory>`), names the node or initializer at fault, and says how to fix or re-export it.
public struct ONNXImportError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of problem this is; stable for programs to match on.
    public enum Code: String, Sendable, Equatable {
        /// The file could not be read.
        case io
        /// The file, a tensor or the graph exceeds a bound of `ONNXImportOptions`.
        case tooLarge
        /// The bytes are not an ONNX model (protobuf decoding failed, or no graph).
        case notONNX
        /// A node's operator type (or domain) has no counterpart in the project's layer set.
        case unsupportedOperator
        /// A supported operator with attributes the layer set cannot express (a 5×5 kernel, a
        /// stride of 2, …).
        case unsupportedAttribute
        /// The graph is not one path of nodes from the input to the output.
        case notAChain
        /// Shapes that do not fit: the graph input, an initializer, a layer's input.
        case shapeMismatch
        /// An initializer keeps its data in an external file.
        case externalData
        /// An initializer or the input is not float32 (or int64 where a shape is expected).
        case unsupportedDataType
        /// An initializer's stored data does not match its declared shape, or is not finite.
        case badTensor
        /// The model that came out fails the project's own validation (`Model.validate`).
        case invalidModel
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
