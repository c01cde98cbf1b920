// A rigorous elementwise bound on |A·X − resolution_ℓ|, shipped with every resolution.

/// Bounds, for every output element (k, b) of Y = A·X, how far a resolution can be from the
/// exact product of the given (real) operands:
///
///     |Y − Y_ℓ| ≤ Σ_{(i,j) not yet computed} 2^{p_i+q_j} · min(‖A_i[k]‖₁·max|X_j[b]|, max|A_i[k]|·‖X_j[b]‖₁)
///               + 2^{p_n}·‖x_b‖₁ + 2^{q_n}·‖A_k‖₁            (truncation: A·X − Ã·X̃)
///               + |Y_ℓ[k,b]|·2^−52                           (rounding the exact sum to Double)
///
/// Each chunk-pair term is Hölder's inequality on integers; the truncation term uses
/// |A − Ã| < 2^{p_n}, |X − X̃| < 2^{q_n}, |Ã| ≤ |A|. The sum is then inflated by 2^−30
/// relative, which covers the floating-point rounding of computing the bound itself
/// (row sums of up to 2^22 terms). Each extra layer removes terms, so bounds never grow.
public struct ErrorBoundModel: Sendable {
    public let rows: Int
    public let vectors: Int
    let pairTerms: [ChunkPair: [Double]]
    let pairWeights: [ChunkPair: Double]
    let residual: [Double]
    /// ‖A_k‖₁ · ‖x_b‖₁ (rows × vectors): bounds |(A·X)[k, b]| itself.
    let magnitude: [Double]

    static let inflation = 1 + 0x1p-30
    static let valueRounding = 0x1p-52

    /// Precomputes each chunk pair's contribution bound from the operands' statistics.
    /// O(m_A · m_x · rows · vectors).
    public init(matrix: ChunkedOperand, vectors: ChunkedOperand) {
        precondition(matrix.columns == vectors.columns, "A·X needs A's columns = X's rows")
        self.init(partitionA: matrix.partition, statisticsA: matrix.statistics,
                  partitionX: vectors.partition, statisticsX: vectors.statistics)
    }

    /// The same from statistics alone (what a job's open record carries to the aggregator).
    public init(partitionA p: PartitionVector, statisticsA sa: ChunkedOperand.Statistics,
                partitionX q: PartitionVector, statisticsX sx: ChunkedOperand.Statistics) {
        let r = sa.valueRowL1.count, nv = sx.valueRowL1.count
        var terms = [ChunkPair: [Double]]()
        var weights = [ChunkPair: Double]()
        for i in 0..<p.chunkCount {
            for j in 0..<q.chunkCount {
                let weight = Double(1).scaled(byPowerOfTwo: p.exponent(ofChunk: i) + q.exponent(ofChunk: j))
                weights[ChunkPair(a: i, x: j)] = weight
                var t = [Double](repeating: 0, count: r * nv)
                for k in 0..<r {
                    let aL1 = sa.planeRowL1[i][k], aMax = sa.planeRowMax[i][k]
                    for b in 0..<nv {
                        t[k * nv + b] = weight * Swift.min(aL1 * sx.planeRowMax[j][b], aMax * sx.planeRowL1[j][b])
                    }
                }
                terms[ChunkPair(a: i, x: j)] = t
            }
        }
        var res = [Double](repeating: 0, count: r * nv)
        let ea = Double(1).scaled(byPowerOfTwo: p.finestExponent)
        let ex = Double(1).scaled(byPowerOfTwo: q.finestExponent)
        for k in 0..<r {
            for b in 0..<nv {
                res[k * nv + b] = ea * sx.valueRowL1[b] + ex * sa.valueRowL1[k]
            }
        }
        self.rows = r
        self.vectors = nv
        self.pairTerms = terms
        self.pairWeights = weights
        self.residual = res
        var mag = [Double](repeating: 0, count: r * nv)
        for k in 0..<r {
            for b in 0..<nv { mag[k * nv + b] = sa.valueRowL1[k] * sx.valueRowL1[b] * Self.inflation }
        }
        self.magnitude = mag
    }

    /// The largest |A_i·X_j| element (row k, vector b) consistent with the operands' statistics:
    /// a partial beyond it is corrupt, whatever sent it.
    public func chunkProductLimit(_ pair: ChunkPair, row k: Int, vector b: Int) -> Double {
        guard let t = pairTerms[pair], let w = pairWeights[pair] else { return 0 }
        return t[k * vectors + b] / w
    }

    /// `chunkProductLimit` for every element (rows × vectors, row-major): one lookup per
    /// mini-job instead of one per element. Empty for a pair outside the model.
    public func chunkProductLimits(_ pair: ChunkPair) -> (terms: [Double], weight: Double) {
        guard let t = pairTerms[pair], let w = pairWeights[pair] else { return ([], 1) }
        return (t, w)
    }

    /// An upper bound on |(A·X)[k, b]|: the error of answering 0.
    public func residualFreeMagnitude(row k: Int, vector b: Int) -> Double { magnitude[k * vectors + b] }

    /// The elementwise bound (rows × vectors) for a result `values` that includes every pair
    /// except `remaining`.
    public func bound(remaining: some Sequence<ChunkPair>, values: Matrix<Double>) -> Matrix<Double> {
        var out = residual
        for pair in remaining {
            guard let t = pairTerms[pair] else { continue }
            for e in 0..<out.count { out[e] += t[e] }
        }
        for e in 0..<out.count {
            out[e] = out[e] * Self.inflation + Swift.abs(values.elements[e]) * Self.valueRounding
                + Double.leastNonzeroMagnitude
        }
        return Matrix(rows: rows, columns: vectors, elements: out)
    }
}
