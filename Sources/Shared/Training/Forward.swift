// Float32 forward evaluation of a batch: dense layers and 3×3 convolutions (im2col) as OpenBLAS
// sgemm, max pooling, ReLU; the reference that refined results converge to, and training's forward.
import SRCore
import SRKernels
import SRNeural
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
        let (inputSize, outputSize) = (network.inputSize, network.outputSize)
        let workspace = Network.Workspace(network, keepsTrace: false)
        var output = [Float](repeating: 0, count: count * outputSize)
        batch.values.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { destination in
                var start = 0
                while start < count {
                    let n = min(slice, count - start)
                    workspace.input(count: n).update(from: source.baseAddress! + start * inputSize, count: n * inputSize)
                    let y = network.forward(count: n, parameters: parameters, workspace: workspace)
                    (destination.baseAddress! + start * outputSize).update(from: y, count: n * outputSize)
                    start += n
                }
            }
        }
        return Tensor(shape: [count, outputSize], values: output)
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
        /// 2×2 stride 2 on [channels, height, width], floor mode (odd last row/column dropped).
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

    /// Reusable buffers for forward and backward passes: a training step that allocates nothing
    /// avoids the page faults of fresh multi-megabyte arrays, which otherwise cost more than the
    /// arithmetic. When `keepsTrace`, every op's input, im2col matrix and pooling argmax survive
    /// until backpropagation; otherwise two activation buffers alternate.
    final class Workspace {
        let keepsTrace: Bool
        /// `slot[i]`: the activation buffer holding op i's input; `slot[ops.count]` the output.
        let slot: [Int]
        let activations: [ScratchBuffer<Float>]
        let columns: [ScratchBuffer<Float>]
        let argmax: [ScratchBuffer<Int32>]
        /// sgemm's [outC, B·H·W] convolution output, or its transposed gradient.
        let product = ScratchBuffer<Float>()
        let gradient = ScratchBuffer<Float>()
        let inputGradient = ScratchBuffer<Float>()
        let columnGradient = ScratchBuffer<Float>()

        init(_ network: Network, keepsTrace: Bool) {
            self.keepsTrace = keepsTrace
            inputSize = network.inputSize
            var slot = [0]
            var buffers = 1
            for op in network.ops {
                // Flatten only reinterprets the shape, so its output is its input buffer.
                if case .flatten = op {
                    slot.append(slot[slot.count - 1])
                } else if keepsTrace {
                    slot.append(buffers)
                    buffers += 1
                } else {
                    slot.append(1 - slot[slot.count - 1])
                    buffers = 2
                }
            }
            self.slot = slot
            activations = (0..<buffers).map { _ in ScratchBuffer() }
            let perOp = keepsTrace ? network.ops.count : 1
            columns = (0..<perOp).map { _ in ScratchBuffer() }
            argmax = (0..<(keepsTrace ? network.ops.count : 0)).map { _ in ScratchBuffer() }
        }

        let inputSize: Int

        /// Where to put `count` samples before ``Network/forward(count:parameters:workspace:)``.
        func input(count: Int) -> UnsafeMutablePointer<Float> {
            activations[0].reserve(count * inputSize)
        }

        func activation(_ i: Int) -> UnsafeMutablePointer<Float> { activations[slot[i]].base }
        func columns(_ i: Int) -> ScratchBuffer<Float> { columns[keepsTrace ? i : 0] }
    }

    /// Runs every op on the `count` samples in `workspace.input(count:)`; returns the outputs
    /// `[count, outputSize]` before the head, valid until the workspace is next used.
    func forward(count: Int, parameters: [[Float]], workspace: Workspace) -> UnsafeMutablePointer<Float> {
        for (i, op) in ops.enumerated() {
            let x = UnsafePointer(workspace.activation(i))
            if case .flatten = op { continue }
            let y = workspace.activations[workspace.slot[i + 1]].reserve(count * sizes[i + 1])
            switch op {
            case .dense(let w, let b, let inputs, let outputs):
                parameters[w].withUnsafeBufferPointer { wp in
                    parameters[b].withUnsafeBufferPointer { bp in
                        Network.dense(x, count: count, weights: wp.baseAddress!, bias: bp.baseAddress!,
                                      inputs: inputs, outputs: outputs, into: y)
                    }
                }
            case .conv(let w, let b, let c, let oc, let h, let wd):
                let columns = workspace.columns(i).reserve(count * c * 9 * h * wd)
                Network.im2col(x, count: count, channels: c, height: h, width: wd, into: columns)
                let product = workspace.product.reserve(count * oc * h * wd)
                parameters[w].withUnsafeBufferPointer { wp in
                    parameters[b].withUnsafeBufferPointer { bp in
                        Network.conv(columns: columns, count: count, weights: wp.baseAddress!, bias: bp.baseAddress!,
                                     channels: c, outChannels: oc, pixels: h * wd, product: product, into: y)
                    }
                }
            case .maxpool(let c, let h, let wd):
                let argmax = workspace.keepsTrace ? workspace.argmax[i].reserve(count * sizes[i + 1]) : nil
                Network.maxpool(x, planes: count * c, height: h, width: wd, into: y, argmax: argmax)
            case .relu:
                // A select, not a branch: the sign of an activation is a coin flip to the predictor.
                for k in 0..<(count * sizes[i]) { y[k] = x[k] > 0 ? x[k] : 0 }
            case .flatten:
                break
            }
        }
        return workspace.activation(ops.count)
    }

    /// y [B, out] = x [B, in] · Wᵀ + b.
    static func dense(_ x: UnsafePointer<Float>, count: Int, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                      inputs: Int, outputs: Int, into y: UnsafeMutablePointer<Float>) {
        for row in 0..<count { (y + row * outputs).update(from: bias, count: outputs) }
        BLAS.gemm(transposeA: false, transposeB: true, m: count, n: outputs, k: inputs,
                  a: x, lda: inputs, b: weights, ldb: inputs, beta: 1, c: y, ldc: outputs)
    }

    /// The im2col matrix [C·9, B·H·W] of x [B, C, H, W]: row (c, ky, kx), column (b, y, x) holds
    /// x[b, c, y + ky − 1, x + kx − 1], zero outside the image — so a convolution is one sgemm.
    static func im2col(_ x: UnsafePointer<Float>, count: Int, channels: Int, height: Int, width: Int,
                       into cols: UnsafeMutablePointer<Float>) {
        let pixels = height * width
        let stride = count * pixels
        for c in 0..<channels {
            for ky in 0..<3 {
                for kx in 0..<3 {
                    let row = cols + ((c * 3 + ky) * 3 + kx) * stride
                    let dx = kx - 1
                    let lo = max(0, -dx), hi = min(width, width - dx)
                    for b in 0..<count {
                        let plane = x + (b * channels + c) * pixels
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

    /// y [B, outC, H·W] = W [outC, C·9] · columns + b, reordered from sgemm's [outC, B·H·W]
    /// (one large sgemm beats B small ones).
    static func conv(columns: UnsafePointer<Float>, count: Int, weights: UnsafePointer<Float>,
                     bias: UnsafePointer<Float>, channels: Int, outChannels: Int, pixels: Int,
                     product: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let stride = count * pixels
        BLAS.gemm(transposeA: false, transposeB: false, m: outChannels, n: stride, k: channels * 9,
                  a: weights, lda: channels * 9, b: columns, ldb: stride, c: product, ldc: stride)
        for o in 0..<outChannels {
            let beta = bias[o]
            for b in 0..<count {
                let src = product + o * stride + b * pixels
                let dst = y + (b * outChannels + o) * pixels
                for p in 0..<pixels { dst[p] = src[p] + beta }
            }
        }
    }

    /// 2×2 max pooling (floor mode) of `planes` planes of height × width; records the flat input index of
    /// every maximum when `argmax` is given (ties go to the first, row-major).
    static func maxpool(_ x: UnsafePointer<Float>, planes: Int, height: Int, width: Int,
                        into y: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>?) {
        precondition(planes * height * width <= Int(Int32.max), "pooling input too large for 32-bit indices")
        let oh = height / 2, ow = width / 2
        var out = 0
        for plane in 0..<planes {
            let base = plane * height * width
            for i in 0..<oh {
                for j in 0..<ow {
                    // Selects and 0/1 arithmetic rather than branches: which of four wins is
                    // unpredictable, and mispredictions made pooling cost as much as the sgemms.
                    let top = base + 2 * i * width + 2 * j, bottom = top + width
                    let a = x[top], b = x[top + 1], c = x[bottom], d = x[bottom + 1]
                    let upper = b > a ? b : a, lower = d > c ? d : c
                    let lowerWins = lower > upper
                    y[out] = lowerWins ? lower : upper
                    if let argmax {
                        let right = lowerWins ? (d > c ? 1 : 0) : (b > a ? 1 : 0)
                        argmax[out] = Int32(truncatingIfNeeded: (lowerWins ? bottom : top) + right)
                    }
                    out += 1
                }
            }
        }
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
        count == 0 ? [] : z.withUnsafeBufferPointer { predictions($0.baseAddress!, count: count) }
    }

    func predictions(_ z: UnsafePointer<Float>, count: Int) -> [Int] {
        let k = outputSize
        if head == .sigmoid { return (0..<count).map { z[$0] > 0 ? 1 : 0 } }
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

/// A growable raw buffer of trivial elements, reused across batches. Contents are undefined
/// after ``reserve(_:)`` grows it; callers write before they read.
final class ScratchBuffer<Element: BitwiseCopyable> {
    private(set) var base: UnsafeMutablePointer<Element>
    private(set) var capacity: Int

    init() {
        base = .allocate(capacity: 1)
        capacity = 1
    }

    /// A pointer to at least `count` elements (old contents are kept only if no growth happened).
    func reserve(_ count: Int) -> UnsafeMutablePointer<Element> {
        if count > capacity {
            base.deallocate()
            base = .allocate(capacity: count)
            capacity = count
        }
        return base
    }

    deinit { base.deallocate() }
}
