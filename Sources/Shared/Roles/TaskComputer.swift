// What a consumer does with one task, without any messaging: load (or reuse) the operand,
// run the exact kernel on the task's row block, return the partial result.

public struct TaskComputer: Sendable {
    public let store: OperandStore
    public let cache: PlaneCache

    public init(store: OperandStore, cache: PlaneCache) {
        self.store = store
        self.cache = cache
    }

    /// Computes `task`'s partial product. Blocking (kernels, store reads): call it from a
    /// `BlockingWork` queue. Throws `StoreError` or `WireError` for a task that cannot be done.
    public func compute(_ task: TaskMessage, worker: String) throws -> PartialMessage {
        let clock = ContinuousClock()
        let start = clock.now
        let n = task.columns
        var exact: [Int64] = []
        var values: [Double] = []
        switch task.mode {
        case .layered:
            let q = try partition(task.partitionX)
            let xValues = task.vectorChunk.map { Int64($0) }
            let xPlane = ChunkPlane(rows: task.vectors, columns: n, bits: q.bits(ofChunk: task.chunkX), values: xValues)
            let partner = (0..<q.chunkCount).map(q.chunkMagnitudeLimit(ofChunk:)).max() ?? 1
            let product: Matrix<Int64>
            if task.matrix == "inline" {
                let rowsMatrix = Matrix(rows: task.rows.count, columns: n, elements: task.inlineRows)
                let operand = try decompose(rowsMatrix, task.partitionA)
                guard task.chunkA < operand.planes.count else { throw WireError("chunk \(task.chunkA) is beyond the partition") }
                product = PreparedPlane(operand.planes[task.chunkA], partnerMagnitude: partner).product(xPlane)
            } else {
                let key = "\(task.matrix)|\(task.partitionA)|\(partner)"
                let cached = try cache.value(for: key) {
                    let a = try loadChecked(task)
                    let operand = try decompose(a, task.partitionA)
                    return .layered(LayeredProduct.preparedPlanes(operand, partitionX: q))
                }
                guard case .layered(let planes) = cached else { throw WireError("cache entry kind mismatch for \(key)") }
                // Checked on every task, cache hit or not: a task must match the stored matrix.
                guard task.chunkA < planes.count, planes[task.chunkA].plane.rows == task.totalRows,
                      planes[task.chunkA].plane.columns == n else {
                    throw WireError("task \(task.task) says \(task.totalRows)×\(n) (chunk \(task.chunkA)) but matrix \(task.matrix) does not match")
                }
                product = planes[task.chunkA].product(xPlane, rows: task.rows)
            }
            exact = product.elements
        case .oneShot:
            let xt = task.vectorValues.map { Float($0) }
            let y: [Float]
            if task.matrix == "inline" {
                let a = Matrix(rows: task.rows.count, columns: n, elements: task.inlineRows.map { Float($0) })
                y = OneShotProduct.product(a, rows: 0..<task.rows.count, vectorsTransposed: xt, count: task.vectors)
            } else {
                let cached = try cache.value(for: "\(task.matrix)|float32") {
                    .float32(try loadChecked(task).map { Float($0) })
                }
                guard case .float32(let a) = cached else { throw WireError("cache entry kind mismatch") }
                guard a.rows == task.totalRows, a.columns == n else {
                    throw WireError("task \(task.task) says \(task.totalRows)×\(n) but matrix \(task.matrix) is \(a.rows)×\(a.columns)")
                }
                y = OneShotProduct.product(a, rows: task.rows, vectorsTransposed: xt, count: task.vectors)
            }
            values = y.map { Double($0) }
        }
        let elapsed = clock.now - start
        let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        return PartialMessage(for: task, computeMicroseconds: micros, worker: worker, exact: exact, values: values)
    }

    /// Loads and prepares a registered matrix ahead of its first task (so the first job does not
    /// pay for reading, verifying and decomposing it).
    public func preload(digest: String, partitionA: [Int], partitionX: [Int]) throws {
        let q = try partition(partitionX)
        let partner = (0..<q.chunkCount).map(q.chunkMagnitudeLimit(ofChunk:)).max() ?? 1
        _ = try cache.value(for: "\(digest)|\(partitionA)|\(partner)") {
            let operand = try decompose(try store.load(digest: digest), partitionA)
            return .layered(LayeredProduct.preparedPlanes(operand, partitionX: q))
        }
    }

    private func loadChecked(_ task: TaskMessage) throws -> Matrix<Double> {
        let a = try store.load(digest: task.matrix)
        guard a.rows == task.totalRows, a.columns == task.columns else {
            throw WireError("matrix \(task.matrix) is \(a.rows)×\(a.columns) but the task says \(task.totalRows)×\(task.columns)")
        }
        return a
    }

    private func partition(_ p: [Int]) throws -> PartitionVector {
        do { return try PartitionVector(p) } catch { throw WireError("\(error)") }
    }

    private func decompose(_ a: Matrix<Double>, _ p: [Int]) throws -> ChunkedOperand {
        do { return try ChunkedOperand(decomposing: a, partition: PartitionVector(p)) } catch { throw WireError("\(error)") }
    }
}
