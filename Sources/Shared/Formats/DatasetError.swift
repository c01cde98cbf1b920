// The one error type of the image-dataset readers (IDX, the MNIST CSV, CIFAR-10 binary): what is
// wrong, in which file, and what to do about it.

/// An error from reading an image dataset. `description` names the file (or `<memory>`) and,
/// where it helps, says how to get a good copy (usually: run `scripts/fetch-data.sh`).
public struct DatasetError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What kind of problem this is; stable for programs to match on.
    public enum Code: String, Sendable, Equatable {
        /// The file is missing or the operating system refused to read it.
        case io
        /// An IDX file whose first four bytes are not the expected magic number.
        case badMagic
        /// An IDX header that declares an impossible image size (0 rows or columns, or more
        /// pixels per image than an Int holds).
        case badHeader
        /// The file ends before the header or the data it declares.
        case truncated
        /// Bytes follow the data that the header accounts for.
        case trailingBytes
        /// An images file and its labels file hold different numbers of items.
        case countMismatch
        /// A CSV row with the wrong number of fields or a field that is not a pixel value.
        case malformedRow
        /// A class label outside 0...9.
        case labelOutOfRange
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// Appended to messages about the fetched files, whose usual cure is fetching them again.
    static let refetchHint = "run scripts/fetch-data.sh to fetch (or re-fetch) the data"
}
