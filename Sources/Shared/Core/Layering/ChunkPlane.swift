// One chunk of every element of an operand, as a compact integer matrix (a "chunk plane").
// Kernels read these planes; GEMV is memory-bound, so the element width is what costs time.

/// The integers of one chunk index for every element of a matrix, row-major, each row padded
/// with zeros to a multiple of `ChunkPlane.rowAlignment` elements so vectorised kernels can
/// read whole SIMD registers without tail handling.
///
/// Storage is the narrowest integer type that holds the chunk: Int8 for chunks of ≤ 7 bits,
/// Int16 for ≤ 15, Int32 for ≤ 31.
public struct ChunkPlane: Sendable, Equatable {
    /// Compact storage of the chunk integers (with row padding).
    public enum Storage: Sendable, Equatable {
        case int8([Int8])
        case int16([Int16])
        case int32([Int32])
    }

    /// Rows are padded to a multiple of this many elements (64 bytes of Int8: one AVX-512 load).
    public static let rowAlignment = 64

    public let rows: Int
    public let columns: Int
    /// Elements between the starts of consecutive rows (≥ columns).
    public let rowStride: Int
    /// Magnitude bits of this chunk: every |element| ≤ 2^bits − 1.
    public let bits: Int
    public let storage: Storage
    /// The largest |element| actually present (≤ 2^bits − 1); kernels use it to prove exactness.
    public let maxMagnitude: Int64

    /// The padded row length for `columns` elements.
    public static func stride(forColumns columns: Int) -> Int {
        (columns + rowAlignment - 1) / rowAlignment * rowAlignment
    }

    /// The storage width chosen for a chunk of `bits` magnitude bits.
    public static func storageBytes(forBits bits: Int) -> Int {
        bits <= 7 ? 1 : bits <= 15 ? 2 : 4
    }

    /// Builds a plane from unpadded row-major values; every |value| must be ≤ 2^bits − 1.
    public init(rows: Int, columns: Int, bits: Int, values: [Int64]) {
        precondition(values.count == rows * columns)
        var builder = Builder(rows: rows, columns: columns, bits: bits)
        for r in 0..<rows {
            for c in 0..<columns { builder.set(row: r, column: c, values[r * columns + c]) }
        }
        self = builder.build()
    }

    package init(rows: Int, columns: Int, rowStride: Int, bits: Int, storage: Storage, maxMagnitude: Int64) {
        self.rows = rows
        self.columns = columns
        self.rowStride = rowStride
        self.bits = bits
        self.storage = storage
        self.maxMagnitude = maxMagnitude
    }

    /// Element (row, column) as an Int64. O(1); for tests and slow paths, not kernels.
    @inlinable
    public subscript(row: Int, column: Int) -> Int64 {
        let i = row * rowStride + column
        switch storage {
        case .int8(let s): return Int64(s[i])
        case .int16(let s): return Int64(s[i])
        case .int32(let s): return Int64(s[i])
        }
    }

    /// Bytes of element storage, padding included.
    public var byteCount: Int { rows * rowStride * Self.storageBytes(forBits: bits) }

    /// Fills a plane element by element; used by the operand decomposition.
    struct Builder {
        let rows: Int, columns: Int, rowStride: Int, bits: Int
        var int8: [Int8] = [], int16: [Int16] = [], int32: [Int32] = []
        var maxMagnitude: Int64 = 0

        init(rows: Int, columns: Int, bits: Int) {
            precondition(bits >= 1 && bits <= PartitionVector.maximumChunkBits)
            self.rows = rows
            self.columns = columns
            self.bits = bits
            self.rowStride = ChunkPlane.stride(forColumns: columns)
            let count = rows * rowStride
            switch ChunkPlane.storageBytes(forBits: bits) {
            case 1: int8 = [Int8](repeating: 0, count: count)
            case 2: int16 = [Int16](repeating: 0, count: count)
            default: int32 = [Int32](repeating: 0, count: count)
            }
        }

        @inline(__always)
        mutating func set(row: Int, column: Int, _ value: Int64) {
            let i = row * rowStride + column
            maxMagnitude = Swift.max(maxMagnitude, Swift.abs(value))
            switch ChunkPlane.storageBytes(forBits: bits) {
            case 1: int8[i] = Int8(value)
            case 2: int16[i] = Int16(value)
            default: int32[i] = Int32(value)
            }
        }

        func build() -> ChunkPlane {
            let storage: Storage
            switch ChunkPlane.storageBytes(forBits: bits) {
            case 1: storage = .int8(int8)
            case 2: storage = .int16(int16)
            default: storage = .int32(int32)
            }
            return ChunkPlane(rows: rows, columns: columns, rowStride: rowStride, bits: bits,
                              storage: storage, maxMagnitude: maxMagnitude)
        }
    }
}
