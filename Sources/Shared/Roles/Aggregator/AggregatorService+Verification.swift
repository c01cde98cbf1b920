// How the aggregator avoids trusting its peers (docs/TRUST.md): it recomputes every statistic
// behind a bound from the operands — x and an inline A travel in the open record, a registered A
// is read from the store — refuses a record whose statistics disagree, and gives each job a
// `PartialVerifier` so a consumer's wrong partial is refused instead of folded in.
import SRAggregation
import SRRoleSupport
import SRCore
import SRProtocol
import SRStore
import SRTransport

extension AggregatorService.Core {
    /// What a job's aggregation rests on, computed by this aggregator.
    struct Verification {
        var statisticsA: ChunkedOperand.Statistics?
        var statisticsX: ChunkedOperand.Statistics
        var verifier: PartialVerifier?
    }

    /// Recomputes the record's statistics and builds its verifier. Throws (the record is then
    /// refused with a failed output) when the record lies about its statistics or lacks x.
    mutating func verification(of record: OpenRecord) throws -> Verification {
        let job = record.job
        guard let x = record.vectors else {
            throw WireError("job \(job.id): the open record does not carry x (header \(Header.carries)); this producer predates verifiable answers — upgrade srproduce")
        }
        let p = try PartitionVector(job.partitionA), q = try PartitionVector(job.partitionX)
        let chunkedX = try ChunkedOperand.vectors(x, partition: q)
        try Self.requireSame(record.statisticsX, chunkedX.statistics, "x", job)
        let verifiable = RowChecksums.fits(job)
        var statisticsA: ChunkedOperand.Statistics?
        var checksums: RowChecksums?
        if let a = record.inlineMatrix {
            let chunkedA = try ChunkedOperand(decomposing: a, partition: p)
            if let claimed = record.statisticsA { try Self.requireSame(claimed, chunkedA.statistics, "A", job) }
            statisticsA = chunkedA.statistics
            if verifiable { checksums = Self.checksums(job, a, chunkedA.planes) }
        } else if job.matrix == "inline" {
            throw WireError("job \(job.id): an inline matrix must travel in the open record (header \(Header.carries): x,a)")
        } else {
            statisticsA = try storedStatistics(job)
            if verifiable { checksums = try storedChecksums(job, p) }
        }
        let verifier = checksums.map { PartialVerifier(job: job, checksums: $0, x: x, xPlanes: chunkedX.planes) }
        if verifier == nil {
            logger.warning("job runs unverified: its checksums would exceed \(RowChecksums.maxWeights) numbers or its chunk products 2^59",
                           metadata: ["job.id": "\(job.id)", "blocks": "\(job.blockCount)"])
        }
        return Verification(statisticsA: statisticsA, statisticsX: chunkedX.statistics, verifier: verifier)
    }

    static func checksumKey(_ job: MatVecJob) -> String {
        "\(job.matrix)|\(job.partitionA)|\(job.mode.rawValue)|\(job.rows)x\(job.columns)|\(job.rowBlock)"
    }

    /// A registered matrix's row checksums for the job's plan, from the cache (built off the loop
    /// when `checksumsNeeded` said so).
    mutating func storedChecksums(_ job: MatVecJob, _ p: PartitionVector) throws -> RowChecksums {
        let key = Self.checksumKey(job)
        if let c = service.checksumCache.withLock({ $0[key] }) { return c }
        // Not built off the loop (e.g. a failure was reported): build here, or say why not.
        let c = try Self.buildChecksums(job, store: service.store)
        remember(c, key)
        return c
    }

    mutating func remember(_ c: RowChecksums, _ key: String) {
        service.rememberChecksums(c, key)
    }

    /// The cache key when `record` needs a registered matrix's row checksums that are not
    /// built yet (the job then waits for them); nil when the job can open now.
    func checksumsNeeded(for record: OpenRecord) -> String? {
        let job = record.job
        guard record.inlineMatrix == nil, job.matrix != "inline", RowChecksums.fits(job), record.vectors != nil,
              service.store != nil else { return nil }
        let key = Self.checksumKey(job)
        return service.checksumCache.withLock({ $0[key] }) == nil ? key : nil
    }

    /// Builds row checksums on a thread of its own (reading and splitting a large A takes
    /// seconds, which must not stall every other job's partials and deadlines), then posts
    /// `checksumsReady` to the loop.
    func buildChecksums(_ key: String, _ job: MatVecJob) {
        let post = post, logger = logger, store = service.store
        Task.detached {
            let started = ContinuousClock.now
            let work = BlockingWork(label: "sr-checksums")
            let result: Result<RowChecksums, WireError>
            do {
                result = .success(try await work.run { try Self.buildChecksums(job, store: store) })
            } catch let e as WireError {
                result = .failure(e)
            } catch {
                result = .failure(WireError("job \(job.id): \(error)"))
            }
            let ms = (ContinuousClock.now - started).wholeMilliseconds
            logger.info("row checksums built", metadata: ["matrix": "\(job.matrix)", "row_block": "\(job.rowBlock)", "ms": "\(ms)"])
            post(.checksumsReady(key, result))
        }
    }

    static func buildChecksums(_ job: MatVecJob, store: OperandStore?) throws -> RowChecksums {
        guard let store else {
            throw WireError("job \(job.id): A is in the operand store, and this aggregator has none; start sraggregate with --store (or SR_STORE) on the producers' store")
        }
        let a = try store.load(digest: job.matrix)
        guard a.rows == job.rows, a.columns == job.columns else {
            throw WireError("job \(job.id) says A is \(job.rows)×\(job.columns); matrix \(job.matrix) is \(a.rows)×\(a.columns)")
        }
        let planes = job.mode == .layered ? try ChunkedOperand(decomposing: a, partition: try PartitionVector(job.partitionA)).planes : []
        return checksums(job, a, planes)
    }

    static func checksums(_ job: MatVecJob, _ a: Matrix<Double>, _ planes: [ChunkPlane]) -> RowChecksums {
        var random = SystemRandomNumberGenerator()
        return job.mode == .layered ? .layered(job: job, a: planes, using: &random) : .oneShot(job: job, a: a, using: &random)
    }

    /// Statistics the record states must be what its operands give: chunk sums and maxima are
    /// exact integers; value sums agree to rounding (1e-9 relative).
    static func requireSame(_ claimed: ChunkedOperand.Statistics, _ actual: ChunkedOperand.Statistics,
                            _ operand: String, _ job: MatVecJob) throws {
        func close(_ a: [Double], _ b: [Double]) -> Bool {
            a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-9 * max(abs($0), abs($1)) }
        }
        guard claimed.planeRowL1 == actual.planeRowL1, claimed.planeRowMax == actual.planeRowMax,
              close(claimed.valueRowL1, actual.valueRowL1) else {
            throw WireError("job \(job.id): the statistics of \(operand) in the open record do not match \(operand) itself; refusing a bound that would rest on them")
        }
    }
}

extension AggregatorService {
    func rememberChecksums(_ c: RowChecksums, _ key: String) {
        checksumCache.withLock { cache in
            if cache.count >= 8 { cache.removeAll() }
            cache[key] = c
        }
    }

    /// Builds the row checksums jobs like `job` need (same matrix, partition, mode, shape and
    /// row block), so the first such job opens at once instead of waiting for them — a pool
    /// that knows its hot matrices calls this before taking jobs (the demo does). Reads and
    /// splits A from the store on the caller's thread.
    public func prepareChecksums(for job: MatVecJob) throws {
        guard job.matrix != "inline", RowChecksums.fits(job) else { return }
        let key = Core.checksumKey(job)
        guard checksumCache.withLock({ $0[key] }) == nil else { return }
        rememberChecksums(try Core.buildChecksums(job, store: store), key)
    }
}
