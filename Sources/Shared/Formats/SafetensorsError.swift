// Errors of reading and writing .safetensors files: the formats target's own type, so that it
// knows nothing of models (SRNeural wraps these as `ModelError` with the same code and message).
import Foundation

/// A safetensors file that cannot be read or written. `description` names the file and the fix.
public struct SafetensorsError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of problem this is; stable for programs to match on.
    public enum Code: String, Sendable, Equatable {
        /// The file ends before its header or data does.
        case truncated
        /// The header is unreadable: absurd length, not JSON, or wrong entry structure.
        case badHeader
        /// A tensor's data offsets overlap another's, leave the buffer, or do not match shape × dtype.
        case badOffsets
        /// A tensor element type other than F32, F64, F16 or BF16.
        case unsupportedDType
        /// The operating system refused to read or write the file.
        case io
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
