// Coded blocks of a chunk plane: what a consumer multiplies for a coded task. Row block b of
// a plane with R rows is rows [b·r, min((b+1)·r, R)) for block height r; the last block is
// padded with zero rows so every coded block has r rows. Built once per plane, code and block
// height (a consumer caches them), never per job.

extension MiniJobCode {
    /// Row block `b`'s rows of a plane with `rows` rows split into blocks of `blockRows`.
    public static func rows(ofBlock b: Int, blockRows: Int, planeRows: Int) -> Range<Int> {
        let start = Swift.min(b * blockRows, planeRows)
        return start..<Swift.min(start + blockRows, planeRows)
    }

    /// Row blocks of `blockRows` rows a plane of `rows` rows splits into.
    public static func blockCount(rows: Int, blockRows: Int) -> Int {
        (rows + blockRows - 1) / blockRows
    }

    /// Coded block `i` of `plane`: Σ_b g_{i,b} · (row block b), `blockRows` rows, in the
    /// narrowest integer storage that holds it (a systematic block keeps the plane's own).
    /// Precondition: the plane splits into exactly K blocks of `blockRows` rows.
    public func encode(_ plane: ChunkPlane, block i: Int, blockRows: Int) -> ChunkPlane {
        precondition(Self.blockCount(rows: plane.rows, blockRows: blockRows) == k,
                     "a plane of \(plane.rows) rows is not \(k) blocks of \(blockRows)")
        precondition(i >= 0 && i < n)
        let magnitude = coefficientSum(i) * plane.maxMagnitude
        let bits = Swift.max(1, 64 - UInt64(magnitude).leadingZeroBitCount)
        precondition(bits <= PartitionVector.maximumChunkBits, "coded block of \(bits) bits")
        var builder = ChunkPlane.Builder(rows: blockRows, columns: plane.columns, bits: bits)
        let weights = (0..<k).map { coefficient(i, $0) }
        for r in 0..<blockRows {
            for c in 0..<plane.columns {
                var v: Int64 = 0
                for b in 0..<k where weights[b] != 0 {
                    let row = b * blockRows + r
                    if row < plane.rows { v += weights[b] * plane[row, c] }
                }
                builder.set(row: r, column: c, v)
            }
        }
        return builder.build()
    }

    /// Largest |value| of any coded block's product with vectors of at most `partner` in
    /// magnitude over `columns` columns, or nil when it reaches `productLimit` (the decode
    /// would no longer be exact): the plan refuses such a code.
    public func productBound(columns: Int, dataMagnitude: Int64, partnerMagnitude: Int64) -> Int64? {
        let worst = Double(columns) * Double(codedMagnitude(dataMagnitude: dataMagnitude)) * Double(partnerMagnitude)
        return worst < Double(Self.productLimit) ? Int64(worst) : nil
    }
}
