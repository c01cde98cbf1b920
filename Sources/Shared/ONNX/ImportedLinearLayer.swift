// A dense or 3×3 convolution layer while it is being imported: weights and bias in float64 so
// that Gemm's alpha/beta, a following bias Add and BatchNormalization fold in before one final
// rounding to float32.
import SRCore

/// Weights as `rows` rows of `inner` values (dense [out, in]; conv [outC, inC·3·3]), bias per row.
struct ImportedLinearLayer: Equatable {
    enum Kind: Equatable {
        case dense
        /// 3×3, stride 1, zero padding 1, on `inChannels` channels.
        case conv3x3(inChannels: Int)
    }

    let kind: Kind
    let rows: Int
    let inner: Int
    var weights: [Double]
    var bias: [Double]
    /// The nodes merged into this layer, for the import summary.
    var sources: [String]

    init(kind: Kind, rows: Int, inner: Int, weights: [Double], bias: [Double], source: String) {
        precondition(weights.count == rows * inner && bias.count == rows, "layer sizes disagree")
        self.kind = kind
        self.rows = rows
        self.inner = inner
        self.weights = weights
        self.bias = bias
        self.sources = [source]
    }

    /// Inference BatchNormalization applied to this layer's outputs, folded in exactly as
    /// s = γ/√(var + ε), w' = w·s, b' = (b − mean)·s + β, per output row, in float64.
    /// Returns the first row whose var + ε is not positive (nothing changed then).
    mutating func foldBatchNormalization(gamma: [Double], beta: [Double], mean: [Double], variance: [Double],
                                         epsilon: Double) -> Int? {
        precondition([gamma.count, beta.count, mean.count, variance.count].allSatisfy { $0 == rows }, "batch norm sizes disagree")
        if let bad = (0..<rows).first(where: { !(variance[$0] + epsilon > 0) }) { return bad }
        for o in 0..<rows {
            let s = gamma[o] / (variance[o] + epsilon).squareRoot()
            for i in 0..<inner { weights[o * inner + i] *= s }
            bias[o] = (bias[o] - mean[o]) * s + beta[o]
        }
        return nil
    }

    /// The weights and bias rounded to float32 (to nearest), in the manifest's layouts: dense
    /// [out, in], conv [outC, inC, 3, 3]; nil if a value does not fit a float32.
    func tensors() -> (weights: Tensor, bias: Tensor)? {
        let w = weights.map(Float.init), b = bias.map(Float.init)
        guard w.allSatisfy(\.isFinite), b.allSatisfy(\.isFinite) else { return nil }
        let shape: [Int] = switch kind {
        case .dense: [rows, inner]
        case .conv3x3(let c): [rows, c, 3, 3]
        }
        return (Tensor(shape: shape, values: w), Tensor(shape: [rows], values: b))
    }
}
