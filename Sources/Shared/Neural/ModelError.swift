// The one error type of model files, manifests, forward evaluation and training: a stable code
// for programs and a message for people that names the file, layer or tensor and what to do.
import SRFormats
import Foundation

/// An error from reading, writing, validating, evaluating or training a model.
/// `description` names the source (a path, `<memory>`, or a layer) and says how to fix it.
public struct ModelError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of problem this is; stable for programs to match on.
    public enum Code: String, Sendable, Equatable {
        /// The safetensors file ends before its header or data does.
        case truncated
        /// The safetensors header is unreadable: absurd length, not JSON, or wrong entry structure.
        case badHeader
        /// A tensor's data offsets overlap another's, leave the buffer, or do not match shape × dtype.
        case badOffsets
        /// A tensor element type other than F32, F64, F16 or BF16.
        case unsupportedDType
        /// The manifest JSON is malformed or lacks a field.
        case badManifest
        /// A layer kind this implementation does not know.
        case unknownLayer
        /// A layer names a tensor the weights file does not contain.
        case missingTensor
        /// A tensor's or an input's shape does not fit the layer that uses it.
        case shapeMismatch
        /// Training or evaluation data that does not fit the model (sizes, labels).
        case badData
        /// The operating system refused to read or write a file.
        case io
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// The same problem, from the safetensors layer: same message, the matching code.
    public init(_ error: SafetensorsError) {
        let code: Code = switch error.code {
        case .truncated: .truncated
        case .badHeader: .badHeader
        case .badOffsets: .badOffsets
        case .unsupportedDType: .unsupportedDType
        case .io: .io
        }
        self.init(code, error.message)
    }

    /// Runs a safetensors operation, reporting its failure as a `ModelError`.
    public static func wrapping<T>(_ body: () throws(SafetensorsError) -> T) throws(ModelError) -> T {
        do { return try body() } catch { throw ModelError(error) }
    }

    /// The OS's words for an I/O failure (e.g. "No such file or directory") rather than
    /// Foundation's generic wrapper text.
    static func osReason(_ error: any Error) -> String { OSReason.of(error) }
}
