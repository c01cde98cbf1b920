// A chunk plane made ready for a kernel: the arithmetic in which its products are provably
// exact, and (for BLAS) a floating-point copy made once and reused for every vector.
import SRCore

/// A chunk plane of A, prepared for products with chunk planes of x whose elements are at most
/// `partnerMagnitude` in absolute value. Every partial sum of a row product is an integer of
/// magnitude ≤ n · max|A_i| · partnerMagnitude, so:
/// - int8 planes on both sides (chunks ≤ 7 bits) and n < 66 000: the vectorised int8 kernel,
///   exact in 32-bit sums, reading 1 byte per element (no copy is made);
/// - an int16 plane (a coded block, MiniJobCode) against int8 vectors: the vectorised int16
///   kernel, exact in 64-bit sums, 2 bytes per element;
/// - ≤ 2^24: float32 BLAS is exact (every partial sum is a representable integer);
/// - ≤ 2^53: float64 BLAS is exact;
/// - otherwise: 64-bit integer loops.
public struct PreparedPlane: Sendable {
    /// The arithmetic a product runs in.
    public enum Path: String, Sendable {
        case int8SIMD = "int8 SIMD"
        case int16SIMD = "int16 SIMD"
        case float32BLAS = "float32 BLAS"
        case float64BLAS = "float64 BLAS"
        case integer = "int64 loop"

        /// Wider arithmetic has a higher rank; a path is exact for anything a lower rank is.
        var rank: Int {
            switch self {
            case .int8SIMD, .int16SIMD: 0
            case .float32BLAS: 1
            case .float64BLAS: 2
            case .integer: 3
            }
        }
    }

    public let plane: ChunkPlane
    public let path: Path
    /// The largest |x chunk| this preparation is exact for.
    public let partnerMagnitude: Int64
    let float32: [Float]
    let float64: [Double]

    /// Largest magnitude of an exact partial sum for each floating-point path.
    static let float32Limit: Double = 0x1p24
    static let float64Limit: Double = 0x1p53

    /// The fastest exact path for `plane` against partners of at most `partnerMagnitude`.
    public static func path(for plane: ChunkPlane, partnerMagnitude: Int64, allowInt8: Bool = true) -> Path {
        if allowInt8, case .int8 = plane.storage, partnerMagnitude <= 127, plane.rowStride <= Int8Kernel.maximumStride {
            return .int8SIMD
        }
        if allowInt8, case .int16 = plane.storage, partnerMagnitude <= 127 {
            return .int16SIMD
        }
        return path(columns: plane.columns, magnitude: plane.maxMagnitude, partnerMagnitude: partnerMagnitude)
    }

    public static func path(columns n: Int, magnitude: Int64, partnerMagnitude: Int64) -> Path {
        let worst = Double(n) * Double(magnitude) * Double(partnerMagnitude)
        return worst <= float32Limit ? .float32BLAS : worst <= float64Limit ? .float64BLAS : .integer
    }

    /// Prepares `plane` (O(rows · stride) time and memory for the BLAS paths). `allowInt8: false`
    /// forces the BLAS or integer paths (benchmarks compare them).
    public init(_ plane: ChunkPlane, partnerMagnitude: Int64, allowInt8: Bool = true) {
        self.plane = plane
        self.partnerMagnitude = partnerMagnitude
        self.path = Self.path(for: plane, partnerMagnitude: partnerMagnitude, allowInt8: allowInt8)
        switch path {
        case .int8SIMD, .int16SIMD:
            float32 = []
            float64 = []
        case .float32BLAS:
            float32 = plane.converted(to: Float.self)
            float64 = []
        case .float64BLAS:
            float32 = []
            float64 = plane.converted(to: Double.self)
        case .integer:
            float32 = []
            float64 = []
        }
    }

    /// Bytes the kernel reads per full pass over the plane.
    public var bytesPerPass: Int {
        switch path {
        case .float32BLAS: plane.rows * plane.rowStride * 4
        case .float64BLAS: plane.rows * plane.rowStride * 8
        case .int8SIMD, .int16SIMD, .integer: plane.byteCount
        }
    }
}

extension ChunkPlane {
    /// The plane's elements (with padding) as floating-point numbers; exact for |v| ≤ 2^24.
    func converted<F: BinaryFloatingPoint>(to: F.Type) -> [F] {
        switch storage {
        case .int8(let s): s.map { F($0) }
        case .int16(let s): s.map { F($0) }
        case .int32(let s): s.map { F($0) }
        }
    }
}
