// Where the time of exact products goes, phase by phase: filled only when a benchmark asks
// (`ExactProfile`), passed down explicitly so that nothing global is written.

/// Accumulated wall time per phase of the exact products of one layer.
package final class ExactPhaseTimes {
    /// Weights split into digit planes and packed.
    package var weights = Duration.zero
    /// Activations split into digit planes (digit path) or converted for BLAS (inside `product`).
    package var split = Duration.zero
    /// im2col: byte patches of the digit planes, or Int128 patches on the other paths.
    package var patches = Duration.zero
    /// The products with their recombination (digit GEMM + shifts, or BLAS / integer loops).
    package var product = Duration.zero
    /// Reordering convolution outputs to [sample, channel, pixel] (the other paths only).
    package var reorder = Duration.zero
    /// Every phase above.
    package var total: Duration { weights + split + patches + product + reorder + epilogue }
    /// The epilogue (bias, ReLU, grid) applied after a product that did not fuse it.
    package var epilogue = Duration.zero
    /// The paths taken, in order (one per product).
    package var paths: [String] = []

    package init() {}

    /// Runs `body`, adding its wall time to the phase at `key` when `times` is non-nil.
    @inline(__always)
    static func measure<T>(_ times: ExactPhaseTimes?, _ key: ReferenceWritableKeyPath<ExactPhaseTimes, Duration>,
                           _ body: () -> T) -> T {
        guard let times else { return body() }
        let clock = ContinuousClock(), start = clock.now
        let result = body()
        times[keyPath: key] += clock.now - start
        return result
    }
}
