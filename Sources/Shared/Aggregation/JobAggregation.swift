// The aggregator's per-job logic as a pure state machine: partials and the deadline in,
// outputs out. No I/O and no clock: callers pass the current time, so tests drive it directly.
import SRCoding
import SRCore
import SRProtocol

/// One job at the aggregator: collects row blocks into mini-jobs, mini-jobs into resolutions,
/// emits each resolution once, and at the deadline emits the best available result exactly once.
public struct JobAggregation: Sendable {
    /// What the caller must do after an input.
    public enum Action: Sendable {
        /// Publish this output (to sr.outputs) and log one line for it.
        case emit(OutputMessage)
        /// The job is finished: acknowledge everything held for it and forget it.
        case close
        /// A coded layer is decoded: tell consumers to drop its remaining coded tasks.
        case layerDone(Int)
        /// The job asked for progress notices and one is due: publish it (best effort).
        case progress(ProgressMessage)
    }

    /// How a partial was taken.
    public enum PartialOutcome: Sendable, Equatable {
        case accepted
        /// Same task seen before (at-least-once delivery): ignore it.
        case duplicate
        /// Arrived after the job closed: count and drop it.
        case late
        /// Does not belong to this job's plan: dead-letter it with this reason.
        case invalid(String)
        /// Failed its checksum (not A·x): dead-letter it with this reason; an honest copy of
        /// the same task is still taken.
        case forged(String)
    }

    public let job: MatVecJob
    let bounds: ErrorBoundModel
    let schedule: LayerSchedule
    var accumulator: ResolutionAccumulator?
    /// Row blocks received per mini-job (layered) or for the one pass (one-shot).
    var blocks: [ChunkPair: [Int: [Int64]]] = [:]
    var oneShotValues: [Double]
    var oneShotBlocks: Set<Int> = []
    var seenTasks: Set<String> = []
    var last: Resolution?
    public private(set) var closedWith: OutputStatus?
    public private(set) var latePartials = 0
    public private(set) var duplicatePartials = 0
    /// Partials refused because they failed their checksum.
    public private(set) var forgedPartials = 0
    /// The latest parity refusals (at most 16), for the log: a parity result that arrived
    /// before the partial that completed its mini-job is refused when the decode fails.
    public private(set) var refusedParity: [String] = []
    /// Partials taken, per layer (one-shot: one entry), for progress notices.
    public private(set) var tasksTaken: [Int]
    /// When the last progress notice went out.
    var lastProgressMs: Int64?
    /// Checks each partial against A and x; nil: partials are taken on trust.
    let verifier: PartialVerifier?
    /// Whether this job's outputs are verified: every partial checked, every statistic behind
    /// the bound computed by the aggregator or the store (`sr-verified` on its outputs).
    public let verified: Bool

    /// `statisticsA`: A's statistics when the record leaves them to the store (the caller read
    /// them there); otherwise they replace the record's (the caller recomputed them).
    /// `statisticsX`, likewise, replaces the record's. `verifier` checks every partial.
    public init(_ record: OpenRecord, statisticsA stored: ChunkedOperand.Statistics? = nil,
                statisticsX computedX: ChunkedOperand.Statistics? = nil, verifier: PartialVerifier? = nil) throws(WireError) {
        job = record.job
        try job.validate()
        self.verifier = verifier
        verified = verifier != nil && computedX != nil && (record.statisticsA == nil || stored != nil)
        let statisticsX = computedX ?? record.statisticsX
        guard let statisticsA = stored ?? record.statisticsA else {
            throw WireError("job \(job.id): A's statistics are neither in the open record nor in the store")
        }
        do {
            let p = try PartitionVector(job.partitionA), q = try PartitionVector(job.partitionX)
            schedule = try job.schedule()
            guard statisticsA.valueRowL1.count == job.rows, statisticsA.planeRowL1.count == p.chunkCount,
                  statisticsX.valueRowL1.count == job.vectors else {
                throw WireError("job \(job.id): statistics do not match the shape")
            }
            bounds = ErrorBoundModel(partitionA: p, statisticsA: statisticsA, partitionX: q, statisticsX: statisticsX)
            if job.mode == .layered {
                accumulator = try ResolutionAccumulator(schedule: schedule, partitionA: p, partitionX: q, rows: job.rows,
                                                        vectors: job.vectors, innerDimension: job.columns, bounds: bounds)
            }
        } catch let e as WireError {
            throw e
        } catch {
            throw WireError("job \(job.id): \(error)")
        }
        oneShotValues = job.mode == .oneShot ? [Double](repeating: 0, count: job.rows * job.vectors) : []
        tasksTaken = [Int](repeating: 0, count: job.resolutionCount)
    }

    public var isClosed: Bool { closedWith != nil }

    /// Elapsed milliseconds since the job was created (wall clock, shared across machines).
    func elapsed(_ nowMs: Int64) -> Double { Double(nowMs - job.createdMs) }

    /// Takes one partial result; a progress notice follows when the job asked for them.
    public mutating func receive(_ p: PartialMessage, nowMs: Int64) -> (PartialOutcome, [Action]) {
        let (outcome, actions) = take(p, nowMs: nowMs)
        guard case .accepted = outcome else { return (outcome, actions) }
        let layer = job.mode == .oneShot ? 0 : p.layer
        if tasksTaken.indices.contains(layer) { tasksTaken[layer] += 1 }
        return (outcome, actions + progressIfDue(nowMs))
    }

    /// How far each layer is: tasks taken of the K it needs (a coded layer issues N > K, any
    /// K of which do, so "done" stops at K).
    public func progress(nowMs: Int64) -> ProgressMessage {
        let needed = job.blockCount
        return ProgressMessage(job: job.id, elapsedMs: elapsed(nowMs),
                               layers: tasksTaken.map { .init(done: min($0, needed), needed: needed) })
    }

    /// A notice when the job asked for them, is still open, and the last one is `progressMs` old.
    mutating func progressIfDue(_ nowMs: Int64) -> [Action] {
        guard let every = job.progressMs, !isClosed, lastProgressMs.map({ nowMs - $0 >= Int64(every) }) ?? true else { return [] }
        lastProgressMs = nowMs
        return [.progress(progress(nowMs: nowMs))]
    }

    mutating func take(_ p: PartialMessage, nowMs: Int64) -> (PartialOutcome, [Action]) {
        guard p.job == job.id else { return (.invalid("partial for job \(p.job) routed to job \(job.id)"), []) }
        if isClosed {
            latePartials += 1
            return (.late, [])
        }
        guard seenTasks.insert(p.task).inserted else {
            duplicatePartials += 1
            return (.duplicate, [])
        }
        // Which of the mini-job's N coded blocks this is (uncoded: the row block, N = K).
        let code = job.code(layer: p.layer)
        let block = code.isCoded ? p.codedBlock : p.rows.lowerBound / job.rowBlock
        let expectedRows = block < code.k ? job.rowRange(block: block) : 0..<job.rowBlock
        guard p.mode == job.mode, p.vectors == job.vectors, block < code.n, p.rows == expectedRows,
              code.isCoded ? p.code == code : p.code == nil else {
            seenTasks.remove(p.task)
            return (.invalid("partial \(p.task) (rows \(p.rows), mode \(p.mode.rawValue), code \(p.code.map { "\($0.k)/\($0.n) block \(p.codedBlock)" } ?? "none")) does not match job \(job.id)'s plan"), [])
        }
        if job.mode == .oneShot {
            guard p.values.count == p.rows.count * job.vectors else {
                seenTasks.remove(p.task)
                return (.invalid("partial \(p.task) has \(p.values.count) values for \(p.rows.count)×\(job.vectors)"), [])
            }
            if oneShotBlocks.contains(block) { duplicatePartials += 1; return (.duplicate, []) }
            if let refused = refuseUnverified(p, block) { return refused }
            oneShotBlocks.insert(block)
            for (i, v) in p.values.enumerated() { oneShotValues[p.rows.lowerBound * job.vectors + i] = v }
            guard oneShotBlocks.count == job.blockCount else { return (.accepted, []) }
            let values = Matrix(rows: job.rows, columns: job.vectors, elements: oneShotValues)
            closedWith = .complete
            return (.accepted, [.emit(OutputMessage(job: job.id, resolution: 1, of: 1, status: .complete, elapsedMs: elapsed(nowMs),
                                                    values: values, bound: oneShotBound(values))), .close])
        }
        // A partial carries one or more mini-jobs of one layer (one task per layer and row block).
        guard !p.pairs.isEmpty else {
            seenTasks.remove(p.task)
            return (.invalid("partial \(p.task) names no chunk pairs"), [])
        }
        for pair in p.pairs {
            guard let layer = schedule.layer(of: pair), layer == p.layer else {
                seenTasks.remove(p.task)
                return (.invalid("partial \(p.task): mini-job \(pair) is not in layer \(p.layer) of job \(job.id)"), [])
            }
        }
        // Pairs still waiting for this block. The pairs of a layer complete together, except
        // when a coded decode fails for some of them: then only those still take it.
        let waiting = Set(p.pairs.filter { blocks[$0, default: [:]][block] == nil && !(accumulator?.contains($0) ?? true) })
        if waiting.isEmpty {
            duplicatePartials += 1
            return (.duplicate, [])
        }
        // Every element must be within what the operands' statistics allow (Hölder): this refuses
        // corrupt partials before they can overflow the sums or hide behind a small bound.
        let perPair = p.rows.count * job.vectors
        guard p.exact.count == p.pairs.count * perPair else {
            seenTasks.remove(p.task)
            return (.invalid("partial \(p.task) has \(p.exact.count) values for \(p.pairs.count) pair(s) × \(p.rows.count)×\(job.vectors)"), [])
        }
        for (n, pair) in p.pairs.enumerated() {
            if let (i, v) = exceedingValue(Array(p.product(n)), of: pair, block: block, code: code) {
                seenTasks.remove(p.task)
                return (.invalid("partial \(p.task): value \(v) of \(pair) at row \(p.rows.lowerBound + i / job.vectors) exceeds what the operands allow"), [])
            }
        }
        // Parity partials have no checksum of their own: what they decode to is checked instead.
        if block < code.k, let refused = refuseUnverified(p, block) { return refused }
        var actions: [Action] = []
        var refusal: String?
        for (n, pair) in p.pairs.enumerated() where waiting.contains(pair) {
            blocks[pair, default: [:]][block] = Array(p.product(n))
            guard blocks[pair]!.count >= code.k else { continue }
            // The mini-job is complete (any K of its N blocks): decode what is missing,
            // assemble its rows in order and fold it in.
            let rowBlocks: [[Int64]]
            switch decodeBlocks(pair, from: blocks[pair]!, probe: p, code: code) {
            case .success(let decoded): rowBlocks = decoded
            case .failure(let why):
                // A parity result decoded to something A·x is not. Row blocks are checked on
                // arrival, so the culprit is parity: drop this mini-job's parity results (its
                // plain row blocks still complete it) and go on with the other pairs.
                let parity = blocks[pair]!.keys.filter { $0 >= code.k }
                blocks[pair] = blocks[pair]!.filter { $0.key < code.k }
                forgedPartials += parity.count
                refusedParity.append("\(pair): parity block(s) \(parity.sorted()) refused: \(why.reason)")
                if refusedParity.count > 16 { refusedParity.removeFirst() }
                refusal = why.reason
                continue
            }
            var product = [Int64]()
            product.reserveCapacity(job.rows * job.vectors)
            for b in 0..<code.k { product += rowBlocks[b] }
            blocks[pair] = nil
            let layerDone = code.isCoded && schedule.layers[p.layer].allSatisfy { $0 == pair || accumulator!.contains($0) }
            do {
                let released = try accumulator!.add(pair, product: Matrix(rows: job.rows, columns: job.vectors, elements: product))
                if layerDone { actions.append(.layerDone(p.layer)) }
                for r in released {
                    last = r
                    let status: OutputStatus = r.isFinal ? .complete : .partial
                    actions.append(.emit(OutputMessage(job: job.id, resolution: r.index + 1, of: r.count, status: status,
                                                       elapsedMs: elapsed(nowMs), values: r.values, bound: r.bound)))
                    if r.isFinal {
                        closedWith = .complete
                        actions.append(.close)
                    }
                }
            } catch {
                return (.invalid("partial \(p.task): \(error)"), actions)
            }
        }
        if let refusal, p.isParity {
            // This parity partial is among the refused: forget it everywhere it still waits, so
            // a redelivered honest copy is taken.
            for pair in waiting { blocks[pair]?[block] = nil }
            seenTasks.remove(p.task)
            return (.forged("partial \(p.task) from worker '\(p.worker)': \(refusal)"), actions)
        }
        return (.accepted, actions)
    }

    /// The first value of a block product beyond what the operands' statistics allow (Hölder):
    /// refuses corrupt partials before they can overflow the sums or hide behind a small bound.
    /// A parity block's row t combines rows b·r + t of the row blocks with weights g_{i,b}.
    func exceedingValue(_ values: [Int64], of pair: ChunkPair, block: Int, code: MiniJobCode) -> (Int, Int64)? {
        let (terms, weight) = bounds.chunkProductLimits(pair)
        guard !terms.isEmpty else { return values.first.map { (0, $0) } }
        let v = job.vectors
        let weights = block < code.k ? [] : (0..<code.k).map { Double(code.coefficient(block, $0)) }
        for (i, value) in values.enumerated() {
            var limit = 0.0
            if block < code.k {
                limit = terms[job.rowBlock * block * v + i]
            } else {
                for b in 0..<code.k {
                    let row = b * job.rowBlock + i / v
                    if row < job.rows { limit += weights[b] * terms[row * v + i % v] }
                }
                limit *= 1 + 0x1p-40   // the sum's own rounding, above 2^53
            }
            if Double(value.magnitude) > limit / weight { return (i, value) }
        }
        return nil
    }

    struct Refusal: Error { let reason: String }

    /// The K row-block products of `pair` from any K coded results: the plain blocks as they
    /// came, the missing ones decoded (MiniJobCode) and then held to the same checks as a
    /// partial — the Hölder limits and, when the job is verified, the checksums.
    func decodeBlocks(_ pair: ChunkPair, from received: [Int: [Int64]], probe: PartialMessage,
                      code: MiniJobCode) -> Result<[[Int64]], Refusal> {
        let v = job.vectors
        if (0..<code.k).allSatisfy({ received[$0] != nil }) { return .success((0..<code.k).map { received[$0]! }) }
        // Every coded block has r rows; the last row block may have fewer: pad it with zeros.
        let width = job.rowBlock * v
        let padded = received.mapValues { $0.count < width ? $0 + [Int64](repeating: 0, count: width - $0.count) : $0 }
        let decoded: [[Int64]]
        do { decoded = try code.decode(padded) } catch { return .failure(Refusal(reason: "\(error)")) }
        var out: [[Int64]] = []
        for b in 0..<code.k {
            let rows = job.rowRange(block: b)
            let values = Array(decoded[b].prefix(rows.count * v))
            if received[b] == nil {
                if exceedingValue(values, of: pair, block: b, code: code) != nil {
                    return .failure(Refusal(reason: "the coded results of \(pair) decode to values beyond what the operands allow"))
                }
                if let verifier {
                    var check = probe
                    check.pairs = [pair]
                    check.rows = rows
                    check.exact = values
                    check.code = nil
                    check.codedBlock = b
                    if let why = verifier.failure(of: check, block: b) {
                        return .failure(Refusal(reason: "the coded results of \(pair) decode to a row block that failed its checksum: \(why)"))
                    }
                }
            }
            out.append(values)
        }
        return .success(out)
    }

    /// A partial that fails its checksum is refused (and forgotten, so an honest copy of the
    /// same task is still taken): nothing it says reaches an output.
    mutating func refuseUnverified(_ p: PartialMessage, _ block: Int) -> (PartialOutcome, [Action])? {
        guard let verifier, let why = verifier.failure(of: p, block: block) else { return nil }
        seenTasks.remove(p.task)
        forgedPartials += 1
        return (.forged("partial \(p.task) from worker '\(p.worker)' failed its checksum: \(why)"), [])
    }

    /// The deadline fired (message or safety timer): emits the best available result, once;
    /// its output carries how late `nowMs` is relative to the job's deadline.
    public mutating func deadlineFired(nowMs: Int64) -> [Action] {
        guard !isClosed else { return [] }
        closedWith = .deadline
        let late = Double(job.deadline.lateMs(at: nowMs))
        if job.mode == .oneShot {
            // Finished row blocks are exact float32 results; the rest are 0 with the a-priori bound.
            let values = Matrix(rows: job.rows, columns: job.vectors, elements: oneShotValues)
            var bound = oneShotBound(values)
            for b in 0..<job.blockCount where !oneShotBlocks.contains(b) {
                for k in job.rowRange(block: b) {
                    for v in 0..<job.vectors { bound[k, v] = aPrioriBound(row: k, vector: v) }
                }
            }
            return [.emit(OutputMessage(job: job.id, resolution: oneShotBlocks.count == job.blockCount ? 1 : 0, of: 1,
                                        status: .deadline, elapsedMs: elapsed(nowMs), values: values, bound: bound, lateMs: late)),
                    .close]
        }
        let output: OutputMessage
        if let last {
            output = OutputMessage(job: job.id, resolution: last.index + 1, of: schedule.resolutionCount, status: .deadline,
                                   elapsedMs: elapsed(nowMs), values: last.values, bound: last.bound, lateMs: late)
        } else {
            let zeros = Matrix(rows: job.rows, columns: job.vectors, repeating: 0.0)
            output = OutputMessage(job: job.id, resolution: 0, of: schedule.resolutionCount, status: .deadline,
                                   elapsedMs: elapsed(nowMs), values: zeros,
                                   bound: bounds.bound(remaining: schedule.layers.joined(), values: zeros), lateMs: late)
        }
        return [.emit(output), .close]
    }

    /// A task of the job cannot be computed (a consumer said why): the job ends now, `failed`
    /// with the reason, rather than at its deadline with what the other tasks gave — its
    /// missing layer would never come, and a silent partial answer hides the fault.
    public mutating func taskFailed(reason: String, nowMs: Int64) -> [Action] {
        guard !isClosed else { return [] }
        closedWith = .failed
        return [.emit(.failed(job: job.id, of: job.mode == .oneShot ? 1 : schedule.resolutionCount,
                              elapsedMs: elapsed(nowMs), reason: reason)), .close]
    }

    /// |A_k·x_b| ≤ ‖A_k‖₁·‖x_b‖₁ (‖x‖∞ ≤ ‖x‖₁): the bound of answering 0.
    func aPrioriBound(row k: Int, vector b: Int) -> Double {
        bounds.residualFreeMagnitude(row: k, vector: b) + Double.leastNonzeroMagnitude
    }

    /// Float32 one-shot error: inputs rounded to float32 (2·2^−24 relative) and an n-term float32
    /// dot product (γ_n = n·2^−24 / (1 − n·2^−24)), both times Σ|a||x| ≤ ‖A_k‖₁·‖x_b‖₁, plus an
    /// absolute term for float32 underflow (each of the ~3n roundings loses at most 2^−149).
    /// For n·2^−24 ≥ ½ the model does not apply and the bound is the a-priori one.
    func oneShotBound(_ values: Matrix<Double>) -> Matrix<Double> {
        let u = 0x1p-24, n = Double(job.columns + 2)
        var out = values
        for k in 0..<job.rows {
            for b in 0..<job.vectors {
                let magnitude = aPrioriBound(row: k, vector: b)
                out[k, b] = n * u < 0.5
                    ? (n * u / (1 - n * u)) * magnitude * (1 + 0x1p-30) + 3 * n * 0x1p-149
                    : magnitude + abs(values[k, b])
            }
        }
        return out
    }
}
