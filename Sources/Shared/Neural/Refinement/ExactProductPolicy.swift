// Which arithmetic exact products may use. Every choice gives bit-identical results; the
// choice only moves time, so tests and benchmarks can force each path.

/// How `DirectEvaluator` and `IncrementalEvaluator` compute each exact product V·Wᵀ.
public enum ExactProductPolicy: Sendable, Equatable {
    /// Per product, the cheaper of the int8 digit-plane GEMM and float64 BLAS by a measured
    /// cost model (`ExactArithmetic.prefersDigits`); products too wide for float64 always
    /// take the digits, and so do convolutions (their other paths build Int128 patches). The
    /// default.
    case automatic
    /// The paths before the digit GEMM existed: float64 BLAS up to 53 bits, then scalar Int64
    /// and Int128 loops, convolutions through Int128 patches. Kept as the baseline.
    case legacy
    /// Always the digit-plane GEMM, at a forced instruction-set level (as
    /// `DigitProduct.level`: 0 portable C, 1 AVX2, 3 AVX-512 VNNI; capped at what the CPU
    /// has; nil: the best).
    case digits(level: Int?)
}
