// Coded blocks of a chunk plane: what a consumer multiplies for a coded task. Row block b of
// a plane with R rows is rows [b·r, min((b+1)·r, R)) for block height r; the last block is
// padded with zero rows so every coded block has r rows. Built once per plane, code and block
// height (a consumer caches them), never per job.
import SRCore

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
        // Sum the weighted row blocks in Int64 over the padded rows (zeros stay zeros), then
        // narrow once: one pass per row block, no per-element dispatch on the storage type.
        let stride = plane.rowStride
        var sums = [Int64](repeating: 0, count: blockRows * stride)
        for b in 0..<k {
            let weight = coefficient(i, b)
            let rows = Self.rows(ofBlock: b, blockRows: blockRows, planeRows: plane.rows)
            guard weight != 0, !rows.isEmpty else { continue }
            func add<T: BinaryInteger>(_ source: [T]) {
                source.withUnsafeBufferPointer { src in
                    sums.withUnsafeMutableBufferPointer { dst in
                        let from = src.baseAddress! + rows.lowerBound * stride
                        for e in 0..<(rows.count * stride) { dst[e] += weight * Int64(from[e]) }
                    }
                }
            }
            switch plane.storage {
            case .int8(let v): add(v)
            case .int16(let v): add(v)
            case .int32(let v): add(v)
            }
        }
        let largest = sums.reduce(Int64(0)) { Swift.max($0, Swift.abs($1)) }   // |sums| < 2^62
        let storage: ChunkPlane.Storage
        switch ChunkPlane.storageBytes(forBits: bits) {
        case 1: storage = .int8(sums.map { Int8($0) })
        case 2: storage = .int16(sums.map { Int16($0) })
        default: storage = .int32(sums.map { Int32($0) })
        }
        return ChunkPlane(rows: blockRows, columns: plane.columns, rowStride: stride, bits: bits, storage: storage,
                          maxMagnitude: largest)
    }

    /// Largest |value| of any coded block's product with vectors of at most `partner` in
    /// magnitude over `columns` columns, or nil when it reaches `productLimit` (the decode
    /// would no longer be exact): the plan refuses such a code.
    public func productBound(columns: Int, dataMagnitude: Int64, partnerMagnitude: Int64) -> Int64? {
        let worst = Double(columns) * Double(codedMagnitude(dataMagnitude: dataMagnitude)) * Double(partnerMagnitude)
        return worst < Double(Self.productLimit) ? Int64(worst) : nil
    }
}
