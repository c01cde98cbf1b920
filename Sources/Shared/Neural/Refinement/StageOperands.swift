// One linear layer's operands at a resolution, with the weights' digit planes split once: a
// worker evaluates many batches at one resolution, and splitting W per batch cost as much as
// the smaller layers' products.
import SRKernels

/// W^(r) (or dW_r) in the weights' unit, b^(r) (or db_r) in z's unit, and W's digit planes.
struct StageOperands: Sendable {
    let weights: [Int64]
    let bias: [Int128]
    /// W without its shared trailing zero bits, as signed int8 digit planes for the best kernel
    /// this CPU has (nil when W is all zero or when the caller did not ask for them: products
    /// then split W themselves, as they do when a policy forces another kernel).
    let digits: PreparedWeights?

    init(weights: [Int64], bias: [Int128], outputs: Int, prepare: Bool) {
        self.weights = weights
        self.bias = bias
        self.digits = prepare ? PreparedWeights(weights, outputs: outputs) : nil
    }

    /// Bytes held (for cache accounting).
    var bytes: Int {
        weights.count * 8 + bias.count * 16 + (digits?.planes.packed.reduce(0) { $0 + $1.count } ?? 0)
    }
}

/// An integer weight matrix's digit planes and the facts products need about it.
struct PreparedWeights: Sendable {
    /// Trailing zero bits shared by every weight (shifted out of the planes).
    let shift: Int
    /// bits(max |W| >> shift).
    let bits: Int
    let planes: SignedDigitWeights

    /// nil for an all-zero W. O(|W| · planes).
    init?(_ w: [Int64], outputs: Int) {
        let m = ExactArithmetic.magnitudes(w)
        guard m != 0 else { return nil }
        shift = m.trailingZeroBitCount
        bits = UInt64.bitWidth - (m >> shift).leadingZeroBitCount
        planes = SignedDigitWeights(w, outputs: outputs, inner: w.count / outputs, rightShift: shift,
                                    digitBits: DigitProduct.weightDigitBits(level: nil))
    }
}

extension QuantizedNetwork {
    /// The relative cost of evaluating one sample directly at each resolution r = 1…R, for
    /// calibration (`ExitCalibration.calibrate(costs:)`): per linear layer its multiply-adds
    /// times (1 + the int8 digit planes of W^(r)), summed. The product runs once per weight
    /// plane; splitting, patches and the epilogue cost about one plane more (`srbench
    /// exact-inference --profile`: the VGG at r = 1, one plane, 1.1 s per 1 000 images; at
    /// R, two planes, 1.9 s). 8-bit digits whatever this CPU's kernel uses, so that a
    /// calibration does not depend on the machine it ran on. O(R · |W|).
    public func resolutionCosts() -> [Double] {
        (1...resolutions).map { r in
            plan.stages.reduce(0.0) { sum, stage in
                let w = tensors[stage.weights]!.units(atResolution: r)
                let m = ExactArithmetic.magnitudes(w)
                let planes = m == 0 ? 0 : SignedDigitWeights(w, outputs: stage.rows, inner: stage.inner,
                                                             rightShift: m.trailingZeroBitCount).packed.count
                return sum + Double(stage.multiplyAdds) * Double(1 + planes)
            }
        }
    }
}

extension ExactStage {
    /// Multiply-adds of one sample's product.
    var multiplyAdds: Int {
        switch kind {
        case .dense(let inputs, let outputs): inputs * outputs
        case .conv3x3(let c, let outC, let height, let width): height * width * outC * c * 9
        }
    }
}
