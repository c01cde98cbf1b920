// A whole layered product computed in one process: decomposition, kernels and accumulation.
// The distributed pipeline runs the same steps across machines.
import SRCore

/// Y = A·X by successive refinement: A and X are split by their partitions, every mini-job
/// A_i·X_j runs through an exact kernel, and resolutions come out in schedule order.
public struct LayeredProduct: Sendable {
    public let matrix: ChunkedOperand
    public let vectors: ChunkedOperand
    public let schedule: LayerSchedule
    public let bounds: ErrorBoundModel

    /// Validates shapes and exactness; throws a `LayeringError` that names the problem.
    public init(matrix a: Matrix<Double>, vectors x: Matrix<Double>,
                partitionA: PartitionVector, partitionX: PartitionVector,
                schedule: LayerSchedule? = nil) throws(LayeringError) {
        guard a.columns == x.rows else {
            throw LayeringError(.shapeMismatch, "A is \(a.rows)×\(a.columns) but x has \(x.rows) rows; A·x needs them equal")
        }
        try self.init(matrix: ChunkedOperand(decomposing: a, partition: partitionA),
                      vectors: x, partitionX: partitionX, schedule: schedule)
    }

    /// A product against an already decomposed matrix (a registered operand): only the
    /// vectors are split per job.
    public init(matrix: ChunkedOperand, vectors x: Matrix<Double>, partitionX: PartitionVector,
                schedule: LayerSchedule? = nil) throws(LayeringError) {
        guard matrix.columns == x.rows else {
            throw LayeringError(.shapeMismatch, "A is \(matrix.rows)×\(matrix.columns) but x has \(x.rows) rows; A·x needs them equal")
        }
        let partitionA = matrix.partition
        self.matrix = matrix
        self.vectors = try ChunkedOperand.vectors(x, partition: partitionX)
        if let schedule {
            self.schedule = schedule
        } else {
            self.schedule = try .bySignificance(chunksA: partitionA.chunkCount, chunksX: partitionX.chunkCount)
        }
        guard self.schedule.chunksA == partitionA.chunkCount, self.schedule.chunksX == partitionX.chunkCount else {
            throw LayeringError(.invalidSchedule, "the schedule is for \(self.schedule.chunksA)×\(self.schedule.chunksX) chunks, the partitions give \(partitionA.chunkCount)×\(partitionX.chunkCount)")
        }
        self.bounds = ErrorBoundModel(matrix: matrix, vectors: vectors)
        _ = try makeAccumulator()   // validates that the exact sums fit
    }

    /// A fresh accumulator for this product.
    public func makeAccumulator() throws(LayeringError) -> ResolutionAccumulator {
        try ResolutionAccumulator(schedule: schedule, partitionA: matrix.partition, partitionX: vectors.partition,
                                  rows: matrix.rows, vectors: vectors.rows, innerDimension: matrix.columns,
                                  bounds: bounds)
    }

    /// Prepares A's planes for kernels (done once per registered matrix in the pool).
    public func preparedPlanes() -> [PreparedPlane] {
        Self.preparedPlanes(matrix, partitionX: vectors.partition)
    }

    /// Prepares `matrix`'s planes for products with vectors split by `partitionX`.
    public static func preparedPlanes(_ matrix: ChunkedOperand, partitionX: PartitionVector) -> [PreparedPlane] {
        let partner = (0..<partitionX.chunkCount).map(partitionX.chunkMagnitudeLimit(ofChunk:)).max() ?? 0
        return matrix.planes.map { PreparedPlane($0, partnerMagnitude: partner) }
    }

    /// Computes every layer in order, calling `onResolution` as each resolution completes.
    public func run(prepared: [PreparedPlane]? = nil,
                    onResolution: (Resolution) throws -> Void = { _ in }) throws -> Resolution {
        let planes = prepared ?? preparedPlanes()
        var acc = try makeAccumulator()
        var last: Resolution?
        for layer in schedule.layers {
            for pair in layer {
                let product = planes[pair.a].product(vectors.planes[pair.x])
                for r in try acc.add(pair, product: product) {
                    try onResolution(r)
                    last = r
                }
            }
        }
        return last!
    }
}
