// An operand (a matrix A, or a batch of vectors X) split into its chunk planes, with the
// per-row statistics that the error bounds need.

/// An operand decomposed by a `PartitionVector`: plane k holds chunk k of every element.
///
/// A matrix A (r × n) is decomposed row by row. A batch of B vectors (the n × B matrix X of
/// A·X) is stored transposed — one plane row per vector — so both operands of a chunk product
/// are read along contiguous rows of length n.
public struct ChunkedOperand: Sendable {
    public let partition: PartitionVector
    /// Rows of the decomposed matrix (for a vector batch: the number of vectors B).
    public let rows: Int
    /// Columns of the decomposed matrix (for a vector batch: the vector length n).
    public let columns: Int
    /// One plane per chunk, most significant first.
    public let planes: [ChunkPlane]
    /// Row sums and maxima for the error bounds.
    public let statistics: Statistics

    /// Per-row magnitudes, used to bound what the not-yet-computed chunk products can add.
    public struct Statistics: Sendable {
        /// planeRowL1[k][row] = Σ_c |chunk_k[row, c]| (exact: integers below 2^53).
        public let planeRowL1: [[Double]]
        /// planeRowMax[k][row] = max_c |chunk_k[row, c]|.
        public let planeRowMax: [[Double]]
        /// valueRowL1[row] = Σ_c |v[row, c]| of the original values (rounded to nearest).
        public let valueRowL1: [Double]

        public init(planeRowL1: [[Double]], planeRowMax: [[Double]], valueRowL1: [Double]) {
            self.planeRowL1 = planeRowL1
            self.planeRowMax = planeRowMax
            self.valueRowL1 = valueRowL1
        }
    }

    /// Splits every element of `matrix` with `partition`. Throws on NaN/Inf or on a value
    /// outside the partition's range, naming the element (as `A[row, column]` by default).
    public init(decomposing matrix: Matrix<Double>, partition: PartitionVector,
                name: String = "A", transposedName: Bool = false) throws(LayeringError) {
        let m = partition.chunkCount
        var builders = (0..<m).map {
            ChunkPlane.Builder(rows: matrix.rows, columns: matrix.columns, bits: partition.bits(ofChunk: $0))
        }
        var rowL1 = [[Double]](repeating: [Double](repeating: 0, count: matrix.rows), count: m)
        var rowMax = rowL1
        var valueL1 = [Double](repeating: 0, count: matrix.rows)
        var chunks = [Int64](repeating: 0, count: m)
        var sums = [Int64](repeating: 0, count: m)
        var maxima = [Int64](repeating: 0, count: m)
        for r in 0..<matrix.rows {
            for k in 0..<m { sums[k] = 0; maxima[k] = 0 }
            var l1 = 0.0
            for c in 0..<matrix.columns {
                let v = matrix.elements[r * matrix.columns + c]
                do {
                    try partition.split(v, into: &chunks, location: nil)
                } catch {
                    let at = transposedName ? "\(name)[\(c)] of vector \(r)" : "\(name)[\(r), \(c)]"
                    try partition.split(v, into: &chunks, location: at)
                }
                l1 += Swift.abs(v)
                for k in 0..<m {
                    let c64 = chunks[k]
                    builders[k].set(row: r, column: c, c64)
                    sums[k] += Swift.abs(c64)
                    maxima[k] = Swift.max(maxima[k], Swift.abs(c64))
                }
            }
            valueL1[r] = l1
            for k in 0..<m {
                rowL1[k][r] = Double(sums[k])
                rowMax[k][r] = Double(maxima[k])
            }
        }
        self.partition = partition
        self.rows = matrix.rows
        self.columns = matrix.columns
        self.planes = builders.map { $0.build() }
        self.statistics = Statistics(planeRowL1: rowL1, planeRowMax: rowMax, valueRowL1: valueL1)
    }

    /// Decomposes a batch of vectors given as the columns of `vectors` (n × B), stored
    /// transposed (B plane rows of length n). Elements are named `x[i] of vector b` in errors.
    public static func vectors(_ vectors: Matrix<Double>, partition: PartitionVector,
                               name: String = "x") throws(LayeringError) -> ChunkedOperand {
        try ChunkedOperand(decomposing: vectors.transposed(), partition: partition,
                           name: name, transposedName: true)
    }

    /// Element (row, column) of the fixed-point value kept by the first `count` chunks.
    public func reconstructed(row: Int, column: Int, chunks count: Int? = nil) -> Double {
        partition.reconstruct(planes.map { $0[row, column] }, using: count)
    }
}
