// A dense row-major matrix: the one container for operands (A, X), chunk products and results.

/// A dense matrix stored row by row. A vector is a matrix with one column (or one row);
/// a batch of B vectors of length n is an n × B matrix, as in A·X.
public struct Matrix<Scalar: Sendable>: Sendable {
    /// Number of rows.
    public let rows: Int
    /// Number of columns.
    public let columns: Int
    /// The elements, row-major: element (r, c) is `elements[r * columns + c]`.
    public var elements: [Scalar]

    /// Wraps `elements` (row-major). Precondition: `elements.count == rows * columns`.
    public init(rows: Int, columns: Int, elements: [Scalar]) {
        precondition(rows >= 0 && columns >= 0, "matrix dimensions must be non-negative")
        precondition(elements.count == rows * columns,
                     "matrix \(rows)×\(columns) needs \(rows * columns) elements, got \(elements.count)")
        self.rows = rows
        self.columns = columns
        self.elements = elements
    }

    /// A matrix with every element equal to `value`.
    public init(rows: Int, columns: Int, repeating value: Scalar) {
        self.init(rows: rows, columns: columns, elements: Array(repeating: value, count: rows * columns))
    }

    /// A column vector (n × 1).
    public init(column: [Scalar]) {
        self.init(rows: column.count, columns: 1, elements: column)
    }

    // Inlinable: generic, and used element by element from other targets (aggregation, neural).
    @inlinable
    public subscript(row: Int, column: Int) -> Scalar {
        get { elements[row * columns + column] }
        set { elements[row * columns + column] = newValue }
    }

    /// The transpose, as a new row-major matrix. O(rows · columns).
    @inlinable
    public func transposed() -> Matrix<Scalar> {
        guard rows > 1 && columns > 1 else {
            return Matrix(rows: columns, columns: rows, elements: elements)
        }
        var out = [Scalar]()
        out.reserveCapacity(elements.count)
        for c in 0..<columns {
            for r in 0..<rows { out.append(elements[r * columns + c]) }
        }
        return Matrix(rows: columns, columns: rows, elements: out)
    }

    /// Applies `transform` to every element.
    @inlinable
    public func map<T: Sendable>(_ transform: (Scalar) throws -> T) rethrows -> Matrix<T> {
        Matrix<T>(rows: rows, columns: columns, elements: try elements.map(transform))
    }
}

extension Matrix: Equatable where Scalar: Equatable {}

extension Matrix where Scalar == Double {
    /// The largest |element|, or 0 for an empty matrix.
    public var maxMagnitude: Double {
        elements.reduce(0) { Swift.max($0, Swift.abs($1)) }
    }
}
