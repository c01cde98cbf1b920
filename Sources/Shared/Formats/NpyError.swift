// The one error type of .npy reading and writing: what went wrong, in which file, and how
// to fix it (usually a NumPy one-liner that re-saves the array in a supported form).

/// An error from decoding, encoding or converting a NumPy `.npy` array. `description` names
/// the source (file path or `<memory>`) and says what to do about the problem.
public struct NpyError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of problem this is; stable for programs to match on.
    public enum Code: String, Sendable, Equatable {
        /// The bytes do not start with the `\x93NUMPY` magic.
        case notNpy
        /// A format version other than 1.0, 2.0 or 3.0.
        case unsupportedVersion
        /// The header dict is malformed, lacks a key, or describes an impossible shape.
        case badHeader
        /// A multi-dimensional array stored column-major.
        case fortranOrder
        /// An element type other than `<f4`, `<f8`, `|i1` or `<i4`.
        case unsupportedDType
        /// The header or the data ends early.
        case truncated
        /// Bytes follow the data that the shape does not account for.
        case oversized
        /// A NaN or infinity where a finite matrix is required.
        case nonFinite
        /// The array's rank does not fit what the caller needs (e.g. a 3-D array as a matrix).
        case wrongShape
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
