// Checks a consumer's partial without recomputing it (Freivalds): with a secret random weight
// s_r per row, the true product P = A_i[block] · X_j satisfies  s·P[:, v] = (sᵀA_i[block])·X_j[:, v]
// for every vector v. The aggregator keeps w = sᵀA_i per row block (n numbers per chunk and
// block, computed once from A) and X's planes (from the open record), so a check costs
// O(rows in the block + n) per pair and vector — far less than the product itself.
//
// Layered partials are exact integers: both sides are computed modulo the prime p = 2^61 − 1.
// Honest values stay below 2^59 in magnitude (a job whose chunk widths and n could exceed that
// runs unverified), so a wrong partial E ≠ 0 has E ≢ 0 (mod p), and it passes only if s·E ≡ 0
// (mod p): probability 1/p < 10^-18 per check for s uniform mod p. The secret s is drawn per
// aggregator process, so a consumer cannot aim at it.
// One-shot partials are float32 results: the check allows their rounding (γ·Σ|s||A||x|), so a
// forgery that passes moves no value beyond the bound the output states anyway.
import SRCore
import SRProtocol

/// The A side of a job's checksums: secret row weights s and w = sᵀA per row block. It depends
/// on A, its partition, the job's mode, shape and row block — not on x — so the aggregator
/// computes it once per matrix and reuses it for every job of that plan. Pure, no I/O.
public struct RowChecksums: Sendable {
    enum Kind: Sendable {
        /// weights[i][b][c] = Σ_{r in block b} s_r · A_i[r, c] (mod p).
        case layered(seeds: [UInt64], weights: [[[UInt64]]])
        /// weights[b][c] = Σ_{r in block b} s_r · A[r, c]; rowScale[r] = |s_r| · Σ_c |A[r, c]|.
        case oneShot(seeds: [Double], weights: [[Double]], rowScale: [Double])
    }

    let kind: Kind
    let rows: Int, columns: Int, rowBlock: Int

    /// Largest number of checksum elements (chunks × blocks × n) kept per plan: beyond it (tiny
    /// row blocks on a huge matrix) the job runs unverified, and its outputs say so.
    public static let maxWeights = 1 << 24

    /// Whether `job` can be verified: its checksums fit `maxWeights`, and (layered) no honest
    /// chunk product can reach 2^59 (chunk widths w_a + w_x + log2 n < 59).
    public static func fits(_ job: MatVecJob) -> Bool {
        let chunks = job.mode == .oneShot ? 1 : job.partitionA.count - 1
        let (p, o1) = job.blockCount.multipliedReportingOverflow(by: job.columns)
        let (q, o2) = p.multipliedReportingOverflow(by: chunks)
        guard !o1, !o2, q <= maxWeights else { return false }
        guard job.mode == .layered else { return true }
        func widest(_ e: [Int]) -> Int { zip(e, e.dropFirst()).map { $0 - $1 }.max() ?? 0 }
        let log2n = Int.bitWidth - job.columns.leadingZeroBitCount
        return widest(job.partitionA) + widest(job.partitionX) + log2n < 59
    }

    /// Layered: `a` are A's chunk planes under the job's partitionA (rows × n).
    public static func layered<G: RandomNumberGenerator>(job: MatVecJob, a: [ChunkPlane], using random: inout G) -> RowChecksums {
        let n = job.columns
        let seeds = (0..<job.rows).map { _ in UInt64.random(in: 0..<Mod61.p, using: &random) }
        let weights = a.map { plane in
            (0..<job.blockCount).map { b in
                var w = [UInt64](repeating: 0, count: n)
                for r in job.rowRange(block: b) {
                    let s = seeds[r]
                    for c in 0..<n { w[c] = Mod61.add(w[c], Mod61.mul(s, Mod61.of(plane[r, c]))) }
                }
                return w
            }
        }
        return RowChecksums(kind: .layered(seeds: seeds, weights: weights), rows: job.rows, columns: n, rowBlock: job.rowBlock)
    }

    /// One-shot: A's values (rows × n).
    public static func oneShot<G: RandomNumberGenerator>(job: MatVecJob, a: Matrix<Double>, using random: inout G) -> RowChecksums {
        let n = job.columns
        let seeds = (0..<job.rows).map { _ in Double.random(in: -1...1, using: &random) }
        let weights = (0..<job.blockCount).map { b in
            var w = [Double](repeating: 0, count: n)
            for r in job.rowRange(block: b) {
                let s = seeds[r]
                for c in 0..<n { w[c] += s * a.elements[r * n + c] }
            }
            return w
        }
        let rowScale = (0..<job.rows).map { r in
            abs(seeds[r]) * (0..<n).reduce(0.0) { $0 + abs(a.elements[r * n + $1]) }
        }
        return RowChecksums(kind: .oneShot(seeds: seeds, weights: weights, rowScale: rowScale), rows: job.rows, columns: n, rowBlock: job.rowBlock)
    }
}

/// The checksums of one job: its plan's `RowChecksums` plus x. Pure, no I/O.
public struct PartialVerifier: Sendable {
    let job: MatVecJob
    let checksums: RowChecksums
    /// Layered: X_j as B × n residues (mod p), per chunk j.
    let xResidues: [[UInt64]]
    /// One-shot: x itself (n × B).
    let x: Matrix<Double>

    /// `x` is the job's n × B vectors; `xPlanes` their chunk planes (`ChunkedOperand.vectors`,
    /// B × n), needed for a layered job.
    public init(job: MatVecJob, checksums: RowChecksums, x: Matrix<Double>, xPlanes: [ChunkPlane]) {
        self.job = job
        self.checksums = checksums
        self.x = x
        if case .layered = checksums.kind {
            xResidues = xPlanes.map { plane in
                (0..<job.vectors).flatMap { v in (0..<job.columns).map { c in Mod61.of(plane[v, c]) } }
            }
        } else {
            xResidues = []
        }
    }

    /// nil when the partial is consistent with A and x; else what is wrong. `p` already
    /// matches the job's plan (rows of block `block`, pair and value counts).
    public func failure(of p: PartialMessage, block: Int) -> String? {
        let n = job.columns, rows = p.rows, nv = job.vectors
        switch checksums.kind {
        case .layered(let seeds, let weights):
            for (k, pair) in p.pairs.enumerated() {
                let product = p.product(k)
                let w = weights[pair.a][block], xj = xResidues[pair.x]
                for v in 0..<nv {
                    var lhs: UInt64 = 0
                    for (i, r) in rows.enumerated() {
                        let value = product[product.startIndex + i * nv + v]
                        // Beyond what an honest product of this job can hold (see `fits`).
                        guard value.magnitude < 1 << 59 else {
                            return "its product of chunk pair \(pair) has the value \(value), beyond any product of this job"
                        }
                        lhs = Mod61.add(lhs, Mod61.mul(seeds[r], Mod61.of(value)))
                    }
                    var rhs: UInt64 = 0
                    for c in 0..<n { rhs = Mod61.add(rhs, Mod61.mul(w[c], xj[v * n + c])) }
                    if lhs != rhs {
                        return "its product of chunk pair \(pair) (rows \(rows.lowerBound)..<\(rows.upperBound), vector \(v)) is not A_\(pair.a)·x_\(pair.x): the checksum differs"
                    }
                }
            }
            return nil
        case .oneShot(let seeds, let weights, let rowScale):
            let w = weights[block]
            // float32 inputs and accumulation: |P − A·x| ≤ γ·Σ|A||x| per element, γ as in the
            // one-shot bound; plus the Float64 rounding of both checksums.
            let gamma = Double(n + 4) * 0x1p-23
            for v in 0..<nv {
                var xMax = 0.0
                for c in 0..<n { xMax = max(xMax, abs(x[c, v])) }
                var lhs = 0.0, lhsMagnitude = 0.0, scale = 0.0
                for (i, r) in rows.enumerated() {
                    let term = seeds[r] * p.values[i * nv + v]
                    lhs += term
                    lhsMagnitude += abs(term)
                    scale += rowScale[r]
                }
                var rhs = 0.0
                for c in 0..<n { rhs += w[c] * x[c, v] }
                let tolerance = (gamma + Double(rows.count + n + 4) * 0x1p-52) * scale * xMax
                    + Double(rows.count + 4) * 0x1p-52 * lhsMagnitude + 0x1p-1000
                if !(abs(lhs - rhs) <= tolerance) {
                    return "its values (rows \(rows.lowerBound)..<\(rows.upperBound), vector \(v)) are not A·x within float32 rounding: the checksum differs by \(abs(lhs - rhs)) (allowed \(tolerance))"
                }
            }
            return nil
        }
    }
}
