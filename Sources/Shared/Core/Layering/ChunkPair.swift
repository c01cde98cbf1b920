// A mini-job's identity inside one product: which chunk of A meets which chunk of x.

/// The pair (i, j) of a mini-job A_i · x_j, 0-based (the paper counts from 1).
/// Its weight is 2^{p_{i+1} + q_{j+1}} with p, q the partitions of A and x.
public struct ChunkPair: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Chunk index of the matrix operand A (0 = most significant).
    public let a: Int
    /// Chunk index of the vector operand x (0 = most significant).
    public let x: Int

    public init(a: Int, x: Int) {
        self.a = a
        self.x = x
    }

    /// i + j: pairs with equal significance belong to the same layer of the default schedule.
    public var significance: Int { a + x }

    /// Orders by significance, then by A's chunk index.
    public static func < (l: ChunkPair, r: ChunkPair) -> Bool {
        (l.significance, l.a) < (r.significance, r.a)
    }

    public var description: String { "A\(a + 1)·x\(x + 1)" }
}
