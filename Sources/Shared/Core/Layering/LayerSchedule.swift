// Which mini-jobs make up each layer: resolution ℓ is the running sum of layers 0…ℓ.

/// An ordered sequence of layers, each a group of chunk pairs, covering every pair
/// (i, j) ∈ [0, m_A) × [0, m_x) exactly once. Resolution ℓ sums every pair of layers ≤ ℓ,
/// so nothing is recomputed and each mini-job is used once.
public struct LayerSchedule: Sendable, Hashable, CustomStringConvertible {
    /// Number of chunks of the matrix operand.
    public let chunksA: Int
    /// Number of chunks of the vector operand.
    public let chunksX: Int
    /// The layers in order; layer ℓ completes resolution ℓ (0-based).
    public let layers: [[ChunkPair]]

    /// A custom schedule; throws unless every pair appears exactly once and is in range.
    public init(chunksA: Int, chunksX: Int, layers: [[ChunkPair]]) throws(LayeringError) {
        guard chunksA >= 1, chunksX >= 1 else {
            throw LayeringError(.invalidSchedule, "a schedule needs at least one chunk per operand (got m_A = \(chunksA), m_x = \(chunksX))")
        }
        var seen = Set<ChunkPair>()
        for (l, layer) in layers.enumerated() {
            guard !layer.isEmpty else {
                throw LayeringError(.invalidSchedule, "layer \(l) of the schedule is empty; every layer must add at least one mini-job")
            }
            for pair in layer {
                guard (0..<chunksA).contains(pair.a), (0..<chunksX).contains(pair.x) else {
                    throw LayeringError(.invalidSchedule, "layer \(l) names \(pair), but A has \(chunksA) chunks and x has \(chunksX)")
                }
                guard seen.insert(pair).inserted else {
                    throw LayeringError(.invalidSchedule, "\(pair) appears twice in the schedule; each mini-job must be used once")
                }
            }
        }
        let missing = Self.allPairs(chunksA: chunksA, chunksX: chunksX).filter { !seen.contains($0) }
        guard missing.isEmpty else {
            throw LayeringError(.invalidSchedule, "the schedule leaves out \(missing.map(\.description).joined(separator: ", ")); the final resolution must include every mini-job")
        }
        self.chunksA = chunksA
        self.chunksX = chunksX
        self.layers = layers
    }

    /// The paper's schedule: layer ℓ holds every pair with i + j = ℓ (0-based), so
    /// m_A = m_x = 2 gives layers of [1, 2, 1] pairs and m = 3 gives [1, 2, 3, 2, 1].
    public static func bySignificance(chunksA: Int, chunksX: Int) throws(LayeringError) -> LayerSchedule {
        let pairs = allPairs(chunksA: chunksA, chunksX: chunksX)
        let layers = Dictionary(grouping: pairs, by: \.significance)
            .sorted { $0.key < $1.key }
            .map { $0.value.sorted() }
        return try LayerSchedule(chunksA: chunksA, chunksX: chunksX, layers: layers)
    }

    /// The reference code's variant: one mini-job per resolution (m_A · m_x resolutions),
    /// in order of significance.
    public static func onePairPerResolution(chunksA: Int, chunksX: Int) throws(LayeringError) -> LayerSchedule {
        try LayerSchedule(chunksA: chunksA, chunksX: chunksX,
                          layers: allPairs(chunksA: chunksA, chunksX: chunksX).sorted().map { [$0] })
    }

    /// A single layer holding every pair: the whole product as one resolution.
    public static func oneShot(chunksA: Int, chunksX: Int) throws(LayeringError) -> LayerSchedule {
        try LayerSchedule(chunksA: chunksA, chunksX: chunksX,
                          layers: [allPairs(chunksA: chunksA, chunksX: chunksX).sorted()])
    }

    /// R, the number of resolutions.
    public var resolutionCount: Int { layers.count }

    /// The layer index containing `pair`.
    public func layer(of pair: ChunkPair) -> Int? {
        layers.firstIndex { $0.contains(pair) }
    }

    static func allPairs(chunksA: Int, chunksX: Int) -> [ChunkPair] {
        guard chunksA >= 1, chunksX >= 1 else { return [] }
        return (0..<chunksA).flatMap { a in (0..<chunksX).map { ChunkPair(a: a, x: $0) } }
    }

    public var description: String {
        layers.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" }.joined(separator: " → ")
    }
}
