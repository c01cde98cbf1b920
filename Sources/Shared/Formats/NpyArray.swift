// An in-memory NumPy array as read from or written to a .npy file: a shape plus typed
// elements in C (row-major) order, for the four element types the worker pool exchanges.

/// The element types we read and write, named by their `.npy` header `descr`. Only
/// little-endian layouts: that is what numpy writes on every common machine, and one byte
/// order keeps the decoder simple.
public enum NpyDType: String, Sendable, CaseIterable {
    case float32 = "<f4"
    case float64 = "<f8"
    case int8 = "|i1"
    case int32 = "<i4"

    /// Bytes per element.
    public var itemSize: Int {
        switch self {
        case .float32, .int32: 4
        case .float64: 8
        case .int8: 1
        }
    }

    /// The dtype a header `descr` names, or nil if unsupported. Accepts `<i1` as well as
    /// `|i1`, since byte order is meaningless for one byte and some writers emit either.
    public init?(descr: String) {
        if descr == "<i1" { self = .int8; return }
        self.init(rawValue: descr)
    }
}

/// Typed element storage of an ``NpyArray``, C order.
public enum NpyData: Sendable, Equatable {
    case float32([Float])
    case float64([Double])
    case int8([Int8])
    case int32([Int32])

    /// Number of elements.
    public var count: Int {
        switch self {
        case .float32(let v): v.count
        case .float64(let v): v.count
        case .int8(let v): v.count
        case .int32(let v): v.count
        }
    }

    /// The element type.
    public var dtype: NpyDType {
        switch self {
        case .float32: .float32
        case .float64: .float64
        case .int8: .int8
        case .int32: .int32
        }
    }
}

/// A NumPy array: `shape` (empty for a 0-d scalar) and its elements in C order.
public struct NpyArray: Sendable, Equatable {
    public var shape: [Int]
    public var data: NpyData

    /// The element type, implied by `data`.
    public var dtype: NpyDType { data.dtype }

    /// Precondition: every dimension is non-negative and their product equals `data.count`.
    public init(shape: [Int], data: NpyData) {
        let count = NpyArray.elementCount(of: shape)
        precondition(count != nil, "shape \(shape) has a negative dimension or too many elements")
        precondition(count == data.count,
                     "shape \(shape) needs \(count ?? 0) elements, got \(data.count)")
        self.shape = shape
        self.data = data
    }

    /// The product of `shape` (1 for a scalar), or nil if a dimension is negative or the
    /// product overflows `Int` — so that a hostile header cannot trap or wrap around.
    static func elementCount(of shape: [Int]) -> Int? {
        guard shape.allSatisfy({ $0 >= 0 }) else { return nil }
        if shape.contains(0) { return 0 }
        var total = 1
        for dim in shape {
            let (product, overflow) = total.multipliedReportingOverflow(by: dim)
            guard !overflow else { return nil }
            total = product
        }
        return total
    }
}
