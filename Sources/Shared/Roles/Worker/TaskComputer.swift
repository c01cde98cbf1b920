// What a consumer does with one task, without any messaging: load (or reuse) the operand,
// run the exact kernel on the task's row block, return the partial result.
import SRCoding
import SRRoleSupport
import SRCore
import SRKernels
import SRProtocol
import SRStore
import SRTransport

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
            let partner = (0..<q.chunkCount).map(q.chunkMagnitudeLimit(ofChunk:)).max() ?? 1
            let planes: [PreparedPlane]
            var rows = task.rows
            if task.matrix == "inline" {
                let rowsMatrix = Matrix(rows: task.rows.count, columns: n, elements: task.inlineRows)
                planes = try decompose(rowsMatrix, task.partitionA).planes.map { PreparedPlane($0, partnerMagnitude: partner) }
                rows = 0..<task.rows.count
            } else {
                let key = "\(task.matrix)|\(task.partitionA)|\(partner)"
                let cached = try cache.value(for: key) {
                    let a = try loadChecked(task)
                    let operand = try decompose(a, task.partitionA)
                    return .layered(LayeredProduct.preparedPlanes(operand, partitionX: q))
                }
                guard case .layered(let p) = cached else { throw WireError("cache entry kind mismatch for \(key)") }
                // Checked on every task, cache hit or not: a task must match the stored matrix.
                guard let first = p.first, first.plane.rows == task.totalRows, first.plane.columns == n else {
                    throw WireError("task \(task.task) says \(task.totalRows)×\(n) but matrix \(task.matrix) does not match")
                }
                // A parity task's rows are 0..<r of its coded block.
                planes = task.isParity
                    ? try codedPlanes(p, matrix: task.matrix, partitionA: task.partitionA, partner: partner,
                                      code: task.code!, block: task.codedBlock, rows: task.rows.count)
                    : p
            }
            exact.reserveCapacity(task.pairs.count * task.rows.count * task.vectors)
            // One pass over A_i per pair; x's chunk arrives as plain integers.
            Trace.mark(task.job, "kernel.start \(task.task)")
            defer { Trace.mark(task.job, "kernel.done \(task.task)") }
            for (k, pair) in task.pairs.enumerated() {
                guard pair.a < planes.count else { throw WireError("chunk \(pair.a) is beyond the partition") }
                let xPlane = ChunkPlane(rows: task.vectors, columns: n, bits: q.bits(ofChunk: pair.x), values: Array(task.vectorChunk(k)))
                exact += planes[pair.a].product(xPlane, rows: rows).elements
            }
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
        let micros = elapsed.wholeMicroseconds
        return PartialMessage(for: task, computeMicroseconds: micros, worker: worker, exact: exact, values: values)
    }

    /// Loads and prepares a registered matrix ahead of its first task (so the first job does not
    /// pay for reading, verifying and decomposing it) — and, given a job's code and row-block
    /// height, its parity blocks too.
    public func preload(digest: String, partitionA: [Int], partitionX: [Int], code: MiniJobCode? = nil, blockRows: Int? = nil) throws {
        let q = try partition(partitionX)
        let partner = (0..<q.chunkCount).map(q.chunkMagnitudeLimit(ofChunk:)).max() ?? 1
        let cached = try cache.value(for: "\(digest)|\(partitionA)|\(partner)") {
            let operand = try decompose(try store.load(digest: digest), partitionA)
            return .layered(LayeredProduct.preparedPlanes(operand, partitionX: q))
        }
        guard let code, code.isCoded, let blockRows, case .layered(let planes) = cached else { return }
        for i in code.k..<code.n {
            _ = try codedPlanes(planes, matrix: digest, partitionA: partitionA, partner: partner, code: code, block: i, rows: blockRows)
        }
    }

    /// Parity block `block` (of `rows` rows) of every chunk plane, built once per matrix,
    /// partition, code and block height and cached beside the planes (never per job).
    private func codedPlanes(_ planes: [PreparedPlane], matrix: String, partitionA: [Int], partner: Int64,
                             code: MiniJobCode, block: Int, rows r: Int) throws -> [PreparedPlane] {
        // A hostile code (many blocks, wide chunks) must be refused here, not trap in encode.
        let widest = planes.map(\.plane.maxMagnitude).max() ?? 0
        let columns = planes.first?.plane.columns ?? 0
        guard code.codedMagnitude(dataMagnitude: widest) < 1 << 31,
              code.productBound(columns: columns, dataMagnitude: widest, partnerMagnitude: partner) != nil else {
            throw WireError("a \(code.k)/\(code.n) code over chunks of magnitude \(widest) does not fit exact 31-bit coded blocks")
        }
        guard MiniJobCode.blockCount(rows: planes.first?.plane.rows ?? 0, blockRows: r) == code.k else {
            throw WireError("\(code.k) row blocks of \(r) rows do not cover the matrix's \(planes.first?.plane.rows ?? 0) rows")
        }
        let key = "\(matrix)|\(partitionA)|\(partner)|code \(code.k)/\(code.n) block \(block) of \(r) rows"
        let cached = cache.value(for: key) {
            .layered(planes.map { PreparedPlane(code.encode($0.plane, block: block, blockRows: r), partnerMagnitude: partner) })
        }
        guard case .layered(let coded) = cached else { throw WireError("cache entry kind mismatch for \(key)") }
        return coded
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
