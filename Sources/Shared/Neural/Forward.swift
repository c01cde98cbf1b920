// Float32 forward evaluation of a batch: dense layers and 3×3 convolutions (im2col) as OpenBLAS
// sgemm, max pooling, ReLU; the reference that refined results converge to, and training's forward.
import Foundation

extension Model {
    /// The network's outputs before its head (softmax/sigmoid): `[B, classes]`.
    ///
    /// `batch` is `[B] + manifest.input`, or any shape whose first dimension is B and whose
    /// remaining elements per sample match the input (C order makes the reshape free), e.g.
    /// `[B, 784]` images for an input of `[1, 28, 28]`. Blocking (OpenBLAS); large batches are
    /// evaluated in slices so that the im2col buffers stay around 32 MB.
    public func logits(for batch: Tensor) throws(ModelError) -> Tensor {
        try logits(for: batch, sliceSize: nil)
    }

    /// ``logits(for:)`` in slices of `sliceSize` samples (nil: ``Network/evaluationSlice``).
    func logits(for batch: Tensor, sliceSize: Int?) throws(ModelError) -> Tensor {
        let network = try Network(self)
        let count = try network.sampleCount(of: batch, input: manifest.input)
        let parameters = network.parameters(of: self)
        let slice = max(1, sliceSize ?? network.evaluationSlice)
        var output = [Float]()
        output.reserveCapacity(count * network.outputSize)
        var start = 0
        while start < count {
            let n = min(slice, count - start)
            let chunk = Array(batch.values[(start * network.inputSize)..<((start + n) * network.inputSize)])
            output += network.forward(chunk, count: n, parameters: parameters)
            start += n
        }
        return Tensor(shape: [count, network.outputSize], values: output)
    }

    /// The head applied to ``logits(for:)``: softmax probabilities `[B, classes]`, or for a
    /// sigmoid head `[B, 1]` probabilities of class 1. A model without a head gets softmax.
    public func probabilities(for batch: Tensor) throws(ModelError) -> Tensor {
        let network = try Network(self)
        var z = try logits(for: batch)
        network.applyHead(to: &z.values, count: z.shape[0])
        return z
    }

    /// The predicted class of every sample: the largest logit, or for a sigmoid head 1 when the
    /// logit is positive.
    public func predictions(for batch: Tensor) throws(ModelError) -> [Int] {
        let network = try Network(self)
        let z = try logits(for: batch)
        return network.predictions(z.values, count: z.shape[0])
    }
}

/// A validated model compiled for evaluation: per-sample sizes resolved and tensors referred to
/// by index, so that training can keep its parameters in plain arrays.
struct Network: Sendable {
    enum Op: Sendable {
        case dense(weight: Int, bias: Int, inputs: Int, outputs: Int)
        /// 3×3, stride 1, zero padding 1, on [channels, height, width].
        case conv(weight: Int, bias: Int, channels: Int, outChannels: Int, height: Int, width: Int)
        /// 2×2 stride 2 on [channels, height, width].
        case maxpool(channels: Int, height: Int, width: Int)
        case relu
        case flatten
    }

    enum Head: Sendable { case none, softmax, sigmoid }

    var ops: [Op] = []
    var head: Head = .none
    /// Elements per sample entering each op; the last entry is the output size.
    var sizes: [Int] = []
    /// Tensor names in parameter order (each tensor once, even if two layers share it).
    var parameterNames: [String] = []
    var parameterShapes: [[Int]] = []

    var inputSize: Int { sizes[0] }
    var outputSize: Int { sizes[sizes.count - 1] }

    init(_ model: Model) throws(ModelError) {
        let shapes = try model.activationShapes()
        var index: [String: Int] = [:]
        func parameter(_ name: String) -> Int {
            if let i = index[name] { return i }
            index[name] = parameterNames.count
            parameterNames.append(name)
            parameterShapes.append(model.tensors[name]!.shape)
            return parameterNames.count - 1
        }
        for (i, layer) in model.manifest.layers.enumerated() {
            let input = shapes[i], output = shapes[i + 1]
            switch layer {
            case .dense(let w, let b):
                ops.append(.dense(weight: parameter(w), bias: parameter(b), inputs: input[0], outputs: output[0]))
            case .conv2d(let w, let b):
                ops.append(.conv(weight: parameter(w), bias: parameter(b), channels: input[0],
                                 outChannels: output[0], height: input[1], width: input[2]))
            case .maxpool2: ops.append(.maxpool(channels: input[0], height: input[1], width: input[2]))
            case .relu: ops.append(.relu)
            case .flatten: ops.append(.flatten)
            // Validation guarantees a head is last, so it never sits between ops.
            case .softmax: head = .softmax
            case .sigmoid: head = .sigmoid
            }
            if !layer.isHead { sizes.append(input.reduce(1, *)) }
        }
        sizes.append(shapes[shapes.count - 1].reduce(1, *))
    }

    func parameters(of model: Model) -> [[Float]] {
        parameterNames.map { model.tensors[$0]!.values }
    }

    /// Samples per forward slice: as many as keep the largest im2col buffer near 8 M floats.
    var evaluationSlice: Int {
        let widest = ops.map { op -> Int in
            if case .conv(_, _, let c, _, let h, let w) = op { return c * 9 * h * w }
            return 0
        }.max() ?? 0
        return widest == 0 ? 1024 : max(1, min(1024, 8_000_000 / widest))
    }

    func sampleCount(of batch: Tensor, input: [Int]) throws(ModelError) -> Int {
        guard let count = batch.shape.first, batch.shape.count >= 2,
              batch.shape.dropFirst().reduce(1, *) == inputSize else {
            throw ModelError(.shapeMismatch, """
                a batch of shape \(batch.shape) does not fit the model input \(input): expected \
                [B] + \(input) or [B, \(inputSize)]
                """)
        }
        return count
    }

    // MARK: Forward

    /// What backpropagation needs from the forward pass: the input of every op (and the final
    /// output), the im2col matrix of every convolution, and the argmax of every pooling.
    struct Trace {
        var activations: [[Float]] = []
        var columns: [Int: [Float]] = [:]
        var argmax: [Int: [Int]] = [:]
    }

    /// Outputs `[count, outputSize]` (before the head) for `input` `[count, inputSize]`.
    func forward(_ input: [Float], count: Int, parameters: [[Float]]) -> [Float] {
        var trace: Trace?
        return forward(input, count: count, parameters: parameters, trace: &trace)
    }

    /// As ``forward(_:count:parameters:)``, filling `trace` when it is non-nil.
    func forward(_ input: [Float], count: Int, parameters: [[Float]], trace: inout Trace?) -> [Float] {
        var x = input
        for (i, op) in ops.enumerated() {
            trace?.activations.append(x)
            switch op {
            case .dense(let w, let b, let inputs, let outputs):
                x = Network.dense(x, count: count, weights: parameters[w], bias: parameters[b],
                                  inputs: inputs, outputs: outputs)
            case .conv(let w, let b, let c, let oc, let h, let wd):
                let columns = Network.im2col(x, count: count, channels: c, height: h, width: wd)
                x = Network.conv(columns: columns, count: count, weights: parameters[w], bias: parameters[b],
                                 channels: c, outChannels: oc, pixels: h * wd)
                if trace != nil { trace!.columns[i] = columns }
            case .maxpool(let c, let h, let wd):
                var argmax: [Int]? = trace == nil ? nil : []
                x = Network.maxpool(x, planes: count * c, height: h, width: wd, argmax: &argmax)
                if let argmax { trace!.argmax[i] = argmax }
            case .relu:
                x.withUnsafeMutableBufferPointer { v in
                    for k in v.indices where !(v[k] > 0) { v[k] = 0 }
                }
            case .flatten:
                break
            }
        }
        trace?.activations.append(x)
        return x
    }

    /// y [B, out] = x [B, in] · Wᵀ + b.
    static func dense(_ x: [Float], count: Int, weights: [Float], bias: [Float],
                      inputs: Int, outputs: Int) -> [Float] {
        var y = [Float](unsafeUninitializedCapacity: count * outputs) { buffer, initialized in
            for row in 0..<count {
                _ = UnsafeMutableBufferPointer(rebasing: buffer[(row * outputs)..<((row + 1) * outputs)])
                    .initialize(from: bias)
            }
            initialized = count * outputs
        }
        x.withUnsafeBufferPointer { xp in
            weights.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    BLAS.gemm(transposeA: false, transposeB: true, m: count, n: outputs, k: inputs,
                              a: xp.baseAddress!, lda: inputs, b: wp.baseAddress!, ldb: inputs,
                              beta: 1, c: yp.baseAddress!, ldc: outputs)
                }
            }
        }
        return y
    }

    /// The im2col matrix [C·9, B·H·W] of x [B, C, H, W]: row (c, ky, kx), column (b, y, x) holds
    /// x[b, c, y + ky − 1, x + kx − 1], zero outside the image — so a convolution is one sgemm.
    static func im2col(_ x: [Float], count: Int, channels: Int, height: Int, width: Int) -> [Float] {
        let pixels = height * width
        let stride = count * pixels
        return [Float](unsafeUninitializedCapacity: channels * 9 * stride) { buffer, initialized in
            let cols = buffer.baseAddress!
            x.withUnsafeBufferPointer { xp in
                let src = xp.baseAddress!
                for c in 0..<channels {
                    for ky in 0..<3 {
                        for kx in 0..<3 {
                            let row = cols + ((c * 3 + ky) * 3 + kx) * stride
                            let dx = kx - 1
                            let lo = max(0, -dx), hi = min(width, width - dx)
                            for b in 0..<count {
                                let plane = src + (b * channels + c) * pixels
                                for y in 0..<height {
                                    let out = row + b * pixels + y * width
                                    let sy = y + ky - 1
                                    guard sy >= 0 && sy < height else {
                                        out.update(repeating: 0, count: width)
                                        continue
                                    }
                                    if lo > 0 { out[0] = 0 }
                                    if hi < width { out[width - 1] = 0 }
                                    (out + lo).update(from: plane + sy * width + lo + dx, count: hi - lo)
                                }
                            }
                        }
                    }
                }
            }
            initialized = channels * 9 * stride
        }
    }

    /// y [B, outC, H·W] = W [outC, C·9] · columns + b, reordered from sgemm's [outC, B·H·W].
    static func conv(columns: [Float], count: Int, weights: [Float], bias: [Float],
                     channels: Int, outChannels: Int, pixels: Int) -> [Float] {
        let stride = count * pixels
        var product = [Float](repeating: 0, count: outChannels * stride)
        columns.withUnsafeBufferPointer { cp in
            weights.withUnsafeBufferPointer { wp in
                product.withUnsafeMutableBufferPointer { pp in
                    BLAS.gemm(transposeA: false, transposeB: false, m: outChannels, n: stride, k: channels * 9,
                              a: wp.baseAddress!, lda: channels * 9, b: cp.baseAddress!, ldb: stride,
                              c: pp.baseAddress!, ldc: stride)
                }
            }
        }
        return [Float](unsafeUninitializedCapacity: outChannels * stride) { buffer, initialized in
            product.withUnsafeBufferPointer { pp in
                for o in 0..<outChannels {
                    let beta = bias[o]
                    for b in 0..<count {
                        let src = pp.baseAddress! + o * stride + b * pixels
                        let dst = buffer.baseAddress! + (b * outChannels + o) * pixels
                        for p in 0..<pixels { dst[p] = src[p] + beta }
                    }
                }
            }
            initialized = outChannels * stride
        }
    }

    /// 2×2 max pooling of `planes` planes of height × width; records the flat input index of
    /// every maximum when `argmax` is non-nil (ties go to the first, row-major).
    static func maxpool(_ x: [Float], planes: Int, height: Int, width: Int, argmax: inout [Int]?) -> [Float] {
        let oh = height / 2, ow = width / 2
        let total = planes * oh * ow
        var winners = argmax == nil ? [] : [Int](repeating: 0, count: total)
        let y = [Float](unsafeUninitializedCapacity: total) { buffer, initialized in
            x.withUnsafeBufferPointer { xp in
                winners.withUnsafeMutableBufferPointer { wp in
                    let record = wp.count > 0
                    var out = 0
                    for plane in 0..<planes {
                        let base = plane * height * width
                        for i in 0..<oh {
                            for j in 0..<ow {
                                let corner = base + 2 * i * width + 2 * j
                                var best = corner
                                if xp[corner + 1] > xp[best] { best = corner + 1 }
                                if xp[corner + width] > xp[best] { best = corner + width }
                                if xp[corner + width + 1] > xp[best] { best = corner + width + 1 }
                                buffer[out] = xp[best]
                                if record { wp[out] = best }
                                out += 1
                            }
                        }
                    }
                }
            }
            initialized = total
        }
        if argmax != nil { argmax = winners }
        return y
    }

    // MARK: Heads

    /// Replaces logits `[count, outputSize]` by the head's probabilities (softmax if no head).
    func applyHead(to z: inout [Float], count: Int) {
        let k = outputSize
        z.withUnsafeMutableBufferPointer { v in
            if head == .sigmoid {
                for i in v.indices { v[i] = 1 / (1 + expf(-v[i])) }
                return
            }
            for row in 0..<count {
                let r = UnsafeMutableBufferPointer(rebasing: v[(row * k)..<((row + 1) * k)])
                let m = r.max() ?? 0
                var sum: Float = 0
                for i in r.indices { r[i] = expf(r[i] - m); sum += r[i] }
                for i in r.indices { r[i] /= sum }
            }
        }
    }

    func predictions(_ z: [Float], count: Int) -> [Int] {
        let k = outputSize
        if head == .sigmoid { return z.map { $0 > 0 ? 1 : 0 } }
        return (0..<count).map { row in
            var best = 0
            for j in 1..<max(k, 1) where z[row * k + j] > z[row * k + best] { best = j }
            return best
        }
    }
}

extension LayerSpec {
    var isHead: Bool {
        switch self {
        case .softmax, .sigmoid: true
        default: false
        }
    }
}
