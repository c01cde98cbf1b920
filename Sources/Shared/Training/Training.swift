// Training in Swift: softmax (or sigmoid) cross-entropy, backpropagation through every layer
// kind, SGD with momentum or Adam, seeded He initialisation and shuffling so runs reproduce.
import SRCore
import SRKernels
import SRNeural
import Foundation

/// How parameters follow their gradients.
public enum Optimizer: Sendable, Equatable {
    /// v ← μ·v + g; θ ← θ − lr·v.
    case sgd(momentum: Float = 0.9)
    /// Adam (Kingma & Ba) with bias correction.
    case adam(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8)
}

/// A network's layout before it has weights: the manifest plus the shape of every tensor it
/// names (a manifest alone cannot say how wide a dense layer is).
public struct ModelArchitecture: Sendable, Equatable {
    public var manifest: ModelManifest
    public var tensorShapes: [String: [Int]]

    public init(manifest: ModelManifest, tensorShapes: [String: [Int]]) {
        self.manifest = manifest
        self.tensorShapes = tensorShapes
    }

    /// He (Kaiming) normal weights, std √(2 / fan-in), and zero biases (tensors named `*.bias`
    /// or of rank 1). Tensors are drawn in name order from one SplitMix64 seeded with `seed`,
    /// so the same seed gives the same model on every platform.
    public func initialized(seed: UInt64) -> Model {
        var generator = SplitMix64(seed: seed)
        var tensors: [String: Tensor] = [:]
        for name in tensorShapes.keys.sorted() {
            let shape = tensorShapes[name]!
            let count = shape.reduce(1, *)
            if shape.count <= 1 || name.hasSuffix(".bias") {
                tensors[name] = Tensor(shape: shape)
                continue
            }
            let fanIn = shape.dropFirst().reduce(1, *)
            let std = (2 / Double(max(fanIn, 1))).squareRoot()
            tensors[name] = Tensor(shape: shape, values: (0..<count).map { _ in
                Float(std * Training.gaussian(using: &generator))
            })
        }
        return Model(manifest: manifest, tensors: tensors)
    }
}

/// The architectures this project trains and refines.
public enum ModelArchitectures {
    /// Dense layers with ReLU between them: input → hidden… → classes, tensors `fc1.weight`,
    /// `fc1.bias`, …; a softmax head, or a sigmoid head when `classes` is 1.
    public static func mlp(input: Int = 784, hidden: [Int] = [256, 128], classes: Int = 10,
                           resolutions: Int = 7, bitsPerUpgrade: Int = 1) -> ModelArchitecture {
        precondition(input > 0 && classes > 0 && hidden.allSatisfy { $0 > 0 }, "layer widths must be positive")
        var layers: [LayerSpec] = []
        var shapes: [String: [Int]] = [:]
        var width = input
        for (i, out) in (hidden + [classes]).enumerated() {
            let name = "fc\(i + 1)"
            if i > 0 { layers.append(.relu) }
            layers.append(.dense(weights: "\(name).weight", bias: "\(name).bias"))
            shapes["\(name).weight"] = [out, width]
            shapes["\(name).bias"] = [out]
            width = out
        }
        layers.append(classes == 1 ? .sigmoid : .softmax)
        let manifest = ModelManifest(input: [input], layers: layers, resolutions: resolutions,
                                     bitsPerUpgrade: bitsPerUpgrade)
        return ModelArchitecture(manifest: manifest, tensorShapes: shapes)
    }

    /// A small VGG-style CNN: conv(C→16)+relu+pool, conv(16→32)+relu+pool, flatten,
    /// dense(32·H/4·W/4 → 128)+relu, dense(128 → classes), softmax. Tensors `conv1.weight`, …,
    /// `fc2.bias`. Height and width must be multiples of 4.
    public static func smallCNN(input: [Int] = [1, 28, 28], classes: Int = 10,
                                resolutions: Int = 7, bitsPerUpgrade: Int = 1) -> ModelArchitecture {
        precondition(input.count == 3 && input.allSatisfy { $0 > 0 } && input[1] % 4 == 0 && input[2] % 4 == 0,
                     "smallCNN needs input [channels, height, width] with height and width multiples of 4")
        let flat = 32 * (input[1] / 4) * (input[2] / 4)
        let layers: [LayerSpec] = [
            .conv2d(weights: "conv1.weight", bias: "conv1.bias"), .relu, .maxpool2,
            .conv2d(weights: "conv2.weight", bias: "conv2.bias"), .relu, .maxpool2,
            .flatten,
            .dense(weights: "fc1.weight", bias: "fc1.bias"), .relu,
            .dense(weights: "fc2.weight", bias: "fc2.bias"),
            classes == 1 ? .sigmoid : .softmax,
        ]
        let shapes: [String: [Int]] = [
            "conv1.weight": [16, input[0], 3, 3], "conv1.bias": [16],
            "conv2.weight": [32, 16, 3, 3], "conv2.bias": [32],
            "fc1.weight": [128, flat], "fc1.bias": [128],
            "fc2.weight": [classes, 128], "fc2.bias": [classes],
        ]
        let manifest = ModelManifest(input: input, layers: layers, resolutions: resolutions,
                                     bitsPerUpgrade: bitsPerUpgrade)
        return ModelArchitecture(manifest: manifest, tensorShapes: shapes)
    }
}

/// Mini-batch training and evaluation. Blocking (OpenBLAS): call from a thread meant for it.
public enum Training {
    /// Row-major samples (`count` × elements per sample) and one label per sample.
    public typealias Dataset = (images: [Float], labels: [UInt8], count: Int)

    /// Trains a freshly initialised `architecture` (see ``ModelArchitecture/initialized(seed:)``).
    public static func train(_ architecture: ModelArchitecture, data: Dataset, epochs: Int, batchSize: Int,
                             learningRate: Float, seed: UInt64, optimizer: Optimizer = .adam(),
                             progress: (String) -> Void = { _ in }) throws(ModelError) -> Model {
        try train(from: architecture.initialized(seed: seed), data: data, epochs: epochs, batchSize: batchSize,
                  learningRate: learningRate, seed: seed, optimizer: optimizer, progress: progress)
    }

    /// Continues training `model` for `epochs` passes over `data` in shuffled mini-batches,
    /// minimising mean softmax cross-entropy (binary cross-entropy for a sigmoid head). The
    /// shuffle is seeded, so equal arguments give bit-identical models at one BLAS thread count.
    /// `progress` receives one line per epoch.
    public static func train(from model: Model, data: Dataset, epochs: Int, batchSize: Int,
                             learningRate: Float, seed: UInt64, optimizer: Optimizer = .adam(),
                             progress: (String) -> Void = { _ in }) throws(ModelError) -> Model {
        guard epochs >= 0, batchSize > 0, learningRate > 0, learningRate.isFinite else {
            throw ModelError(.badData, "epochs must be ≥ 0, batch size > 0 and the learning rate positive (got \(epochs), \(batchSize), \(learningRate))")
        }
        let network = try Network(model)
        try check(data, network: network)
        var parameters = network.parameters(of: model)
        var state = OptimizerState(optimizer, shapes: parameters.map(\.count))
        // Independent of the initialisation stream, so changing one does not shift the other.
        var shuffler = SplitMix64(seed: seed ^ 0x5348_5546_464C_4521)
        var order = Array(0..<data.count)
        let inputSize = network.inputSize
        let clock = ContinuousClock()
        let workspace = Network.Workspace(network, keepsTrace: true)
        var gradients = parameters.map { [Float](repeating: 0, count: $0.count) }
        var labels = [UInt8](repeating: 0, count: batchSize)

        for epoch in 0..<epochs {
            let started = clock.now
            shuffle(&order, using: &shuffler)
            var lossSum: Double = 0
            var correct = 0
            var start = 0
            while start < data.count {
                let n = min(batchSize, data.count - start)
                let x = workspace.input(count: n)
                data.images.withUnsafeBufferPointer { images in
                    for (j, k) in order[start..<(start + n)].enumerated() {
                        (x + j * inputSize).update(from: images.baseAddress! + k * inputSize, count: inputSize)
                        labels[j] = data.labels[k]
                    }
                }
                let step = network.lossAndGradients(count: n, labels: labels, parameters: parameters,
                                                    gradients: &gradients, workspace: workspace)
                lossSum += Double(step.loss) * Double(n)
                correct += step.correct
                state.update(&parameters, gradients: gradients, learningRate: learningRate)
                start += n
            }
            let seconds = (clock.now - started) / .seconds(1)
            let count = max(data.count, 1)
            progress(String(format: "epoch %d/%d: loss %.4f, train accuracy %.4f, %.1f s",
                            epoch + 1, epochs, lossSum / Double(count), Double(correct) / Double(count), seconds))
        }
        var trained = model
        for (name, values) in zip(network.parameterNames, parameters) {
            trained.tensors[name]!.values = values
        }
        return trained
    }

    /// The fraction of samples whose predicted class equals the label.
    public static func evaluate(_ model: Model, images: [Float], labels: [UInt8]) throws(ModelError) -> Double {
        let network = try Network(model)
        let data: Dataset = (images, labels, labels.count)
        try check(data, network: network)
        guard !labels.isEmpty else { return 0 }
        let predicted = try model.predictions(for: Tensor(shape: [labels.count, network.inputSize], values: images))
        return Double(zip(predicted, labels).filter { $0 == Int($1) }.count) / Double(labels.count)
    }

    /// Mean loss over the batch and its gradient for every tensor, by backpropagation
    /// (the quantities one training step uses; exposed for gradient checks).
    public static func lossAndGradients(_ model: Model, images: [Float],
                                        labels: [UInt8]) throws(ModelError) -> (loss: Float, gradients: [String: Tensor]) {
        let network = try Network(model)
        try check((images, labels, labels.count), network: network)
        let parameters = network.parameters(of: model)
        var values = parameters.map { [Float](repeating: 0, count: $0.count) }
        let workspace = Network.Workspace(network, keepsTrace: true)
        guard !labels.isEmpty else { return (0, [:]) }
        images.withUnsafeBufferPointer { workspace.input(count: labels.count).update(from: $0.baseAddress!, count: $0.count) }
        let step = network.lossAndGradients(count: labels.count, labels: labels, parameters: parameters,
                                            gradients: &values, workspace: workspace)
        var gradients: [String: Tensor] = [:]
        for (i, name) in network.parameterNames.enumerated() {
            gradients[name] = Tensor(shape: network.parameterShapes[i], values: values[i])
        }
        return (step.loss, gradients)
    }

    private static func check(_ data: Dataset, network: Network) throws(ModelError) {
        guard data.count >= 0, data.labels.count == data.count else {
            throw ModelError(.badData, "the dataset says \(data.count) samples but has \(data.labels.count) labels")
        }
        guard data.images.count == data.count * network.inputSize else {
            throw ModelError(.badData, "\(data.count) samples of \(network.inputSize) values need \(data.count * network.inputSize) image values, got \(data.images.count)")
        }
        let classes = network.head == .sigmoid ? 2 : network.outputSize
        if let bad = data.labels.firstIndex(where: { Int($0) >= classes }) {
            throw ModelError(.badData, "label \(data.labels[bad]) of sample \(bad) is out of range: the model has \(classes) classes (0…\(classes - 1))")
        }
    }

    /// Fisher–Yates with our own generator, because `shuffle(using:)` may change its algorithm
    /// between Swift versions and reproducibility must not.
    static func shuffle(_ a: inout [Int], using g: inout SplitMix64) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            a.swapAt(i, Int(g.next() % UInt64(i + 1)))
        }
    }

    /// A standard normal sample (Box–Muller), from 53-bit uniforms.
    static func gaussian(using g: inout SplitMix64) -> Double {
        let u1 = (Double(g.next() >> 11) + 1) * 0x1p-53   // (0, 1]: log is finite
        let u2 = Double(g.next() >> 11) * 0x1p-53
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}

/// Per-parameter optimiser memory (momentum, Adam moments) and the step count.
struct OptimizerState {
    let optimizer: Optimizer
    var first: [[Float]]
    var second: [[Float]]
    var step = 0

    init(_ optimizer: Optimizer, shapes: [Int]) {
        self.optimizer = optimizer
        first = shapes.map { [Float](repeating: 0, count: $0) }
        if case .adam = optimizer { second = first } else { second = [] }
    }

    mutating func update(_ parameters: inout [[Float]], gradients: [[Float]], learningRate: Float) {
        step += 1
        for i in parameters.indices {
            parameters[i].withUnsafeMutableBufferPointer { p in
                gradients[i].withUnsafeBufferPointer { g in
                    first[i].withUnsafeMutableBufferPointer { m in
                        switch optimizer {
                        case .sgd(let momentum):
                            for k in p.indices {
                                m[k] = momentum * m[k] + g[k]
                                p[k] -= learningRate * m[k]
                            }
                        case .adam(let beta1, let beta2, let epsilon):
                            let c1 = 1 - Float(pow(Double(beta1), Double(step)))
                            let c2 = 1 - Float(pow(Double(beta2), Double(step)))
                            let rate = learningRate * c2.squareRoot() / c1
                            second[i].withUnsafeMutableBufferPointer { v in
                                for k in p.indices {
                                    m[k] = beta1 * m[k] + (1 - beta1) * g[k]
                                    v[k] = beta2 * v[k] + (1 - beta2) * g[k] * g[k]
                                    p[k] -= rate * m[k] / (v[k].squareRoot() + epsilon)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

extension Network {
    /// One forward and backward pass over the `count` samples in `workspace.input(count:)`:
    /// overwrites `gradients` (one array per parameter) and returns the mean loss and how many
    /// samples the current parameters classify correctly.
    func lossAndGradients(count: Int, labels: [UInt8], parameters: [[Float]], gradients: inout [[Float]],
                          workspace: Workspace) -> (loss: Float, correct: Int) {
        let output = forward(count: count, parameters: parameters, workspace: workspace)
        let predicted = predictions(UnsafePointer(output), count: count)
        let correct = (0..<count).filter { predicted[$0] == Int(labels[$0]) }.count
        let loss = lossAndGradient(output, labels: labels, count: count,
                                   into: workspace.gradient.reserve(count * outputSize))
        for i in gradients.indices {
            gradients[i].withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        }
        backward(count: count, parameters: parameters, gradients: &gradients, workspace: workspace)
        return (loss, correct)
    }

    /// Mean cross-entropy of logits `z` `[count, outputSize]`; writes its gradient with respect to
    /// them to `g`: softmax − one-hot (or σ(z) − y for a sigmoid head), over the batch size.
    func lossAndGradient(_ z: UnsafePointer<Float>, labels: [UInt8], count: Int,
                         into g: UnsafeMutablePointer<Float>) -> Float {
        let k = outputSize
        var loss: Double = 0
        let scale = 1 / Float(max(count, 1))
        for row in 0..<count {
            let label = Int(labels[row])
            if head == .sigmoid {
                let v = z[row], y = Float(label)
                // softplus(v) − y·v, written to stay finite for large |v|.
                loss += Double(max(v, 0) - y * v + log1pf(expf(-abs(v))))
                g[row] = (1 / (1 + expf(-v)) - y) * scale
                continue
            }
            let zr = z + row * k, gr = g + row * k
            var m = zr[0]
            for j in 1..<max(k, 1) { m = max(m, zr[j]) }
            var sum: Float = 0
            for j in 0..<k { gr[j] = expf(zr[j] - m); sum += gr[j] }
            loss += Double(logf(sum) + m - zr[label])
            for j in 0..<k { gr[j] = gr[j] / sum * scale }
            gr[label] -= scale
        }
        return Float(loss / Double(max(count, 1)))
    }

    /// Backpropagates the output gradient in `workspace.gradient` through the ops, adding each
    /// parameter's gradient to `gradients`.
    func backward(count: Int, parameters: [[Float]], gradients: inout [[Float]], workspace: Workspace) {
        // The gradient with respect to the current op's output, and the buffer for its input's.
        var g = workspace.gradient, dx = workspace.inputGradient
        let firstTrainable = ops.firstIndex { op in
            switch op {
            case .dense, .conv: true
            default: false
            }
        } ?? ops.count
        for i in ops.indices.reversed() {
            // Gradients below the first layer with parameters lead only to the image: skip them.
            let needsInput = i > firstTrainable
            let gp = UnsafePointer(g.base)
            switch ops[i] {
            case .dense(let w, let b, let inputs, let outputs):
                let x = UnsafePointer(workspace.activation(i))
                gradients[w].withUnsafeMutableBufferPointer { dw in
                    // dW [out, in] += gᵀ [out, B] · x [B, in]
                    BLAS.gemm(transposeA: true, transposeB: false, m: outputs, n: inputs, k: count,
                              a: gp, lda: outputs, b: x, ldb: inputs, beta: 1, c: dw.baseAddress!, ldc: inputs)
                }
                gradients[b].withUnsafeMutableBufferPointer { db in
                    for row in 0..<count {
                        for j in 0..<outputs { db[j] += gp[row * outputs + j] }
                    }
                }
                guard needsInput else { break }
                let dxp = dx.reserve(count * inputs)
                parameters[w].withUnsafeBufferPointer { wp in
                    // dx [B, in] = g [B, out] · W [out, in]
                    BLAS.gemm(transposeA: false, transposeB: false, m: count, n: inputs, k: outputs,
                              a: gp, lda: outputs, b: wp.baseAddress!, ldb: inputs, c: dxp, ldc: inputs)
                }
                swap(&g, &dx)
            case .conv(let w, let b, let c, let oc, let h, let wd):
                // Moved out and back (not copied) so the two inout arguments do not overlap.
                var dw = [Float](), db = [Float]()
                swap(&dw, &gradients[w])
                swap(&db, &gradients[b])
                convBackward(gp, op: i, count: count, weights: parameters[w], dWeights: &dw, dBias: &db,
                             channels: c, outChannels: oc, height: h, width: wd,
                             inputGradient: needsInput ? dx.reserve(count * c * h * wd) : nil, workspace: workspace)
                swap(&dw, &gradients[w])
                swap(&db, &gradients[b])
                if needsInput { swap(&g, &dx) }
            case .maxpool:
                guard needsInput else { break }
                let n = count * sizes[i]
                let dxp = dx.reserve(n)
                dxp.update(repeating: 0, count: n)
                let winners = workspace.argmax[i].base
                for k in 0..<(count * sizes[i + 1]) { dxp[Int(winners[k])] += gp[k] }
                swap(&g, &dx)
            case .relu:
                guard needsInput else { break }
                // Both loads before the select: a load inside `?:` is conditional, so the
                // compiler emits a branch, which the predictor gets wrong half the time.
                let y = workspace.activation(i + 1), n = count * sizes[i]
                let dxp = dx.reserve(n)
                for k in 0..<n {
                    let (gk, yk) = (gp[k], y[k])
                    dxp[k] = yk > 0 ? gk : 0
                }
                swap(&g, &dx)
            case .flatten:
                break
            }
        }
    }

    /// Gradients of a 3×3 convolution from its output gradient `g` [B, outC, H·W]: weights and
    /// bias accumulate; the input gradient [B, C, H, W] goes to `inputGradient` when given.
    private func convBackward(_ g: UnsafePointer<Float>, op: Int, count: Int, weights: [Float],
                              dWeights: inout [Float], dBias: inout [Float], channels: Int, outChannels: Int,
                              height: Int, width: Int, inputGradient: UnsafeMutablePointer<Float>?,
                              workspace: Workspace) {
        let pixels = height * width
        let stride = count * pixels
        let inner = channels * 9
        let columns = UnsafePointer(workspace.columns(op).base)
        // sgemm's layout: [outC, B·H·W].
        let g2 = workspace.product.reserve(outChannels * stride)
        for b in 0..<count {
            for o in 0..<outChannels {
                (g2 + o * stride + b * pixels).update(from: g + (b * outChannels + o) * pixels, count: pixels)
            }
        }
        dWeights.withUnsafeMutableBufferPointer { dw in
            BLAS.gemm(transposeA: false, transposeB: true, m: outChannels, n: inner, k: stride,
                      a: g2, lda: stride, b: columns, ldb: stride, beta: 1, c: dw.baseAddress!, ldc: inner)
        }
        for o in 0..<outChannels {
            var s: Float = 0
            for k in 0..<stride { s += g2[o * stride + k] }
            dBias[o] += s
        }
        guard let inputGradient else { return }
        let dColumns = workspace.columnGradient.reserve(inner * stride)
        weights.withUnsafeBufferPointer { wp in
            BLAS.gemm(transposeA: true, transposeB: false, m: inner, n: stride, k: outChannels,
                      a: wp.baseAddress!, lda: inner, b: g2, ldb: stride, c: dColumns, ldc: stride)
        }
        Network.col2im(dColumns, count: count, channels: channels, height: height, width: width, into: inputGradient)
    }

    /// The adjoint of ``im2col(_:count:channels:height:width:into:)``: sums every column entry
    /// back onto the pixel it was copied from.
    static func col2im(_ cols: UnsafePointer<Float>, count: Int, channels: Int, height: Int, width: Int,
                       into x: UnsafeMutablePointer<Float>) {
        let pixels = height * width
        let stride = count * pixels
        x.update(repeating: 0, count: count * channels * pixels)
        for c in 0..<channels {
            for ky in 0..<3 {
                for kx in 0..<3 {
                    let row = cols + ((c * 3 + ky) * 3 + kx) * stride
                    let dx = kx - 1
                    let lo = max(0, -dx), hi = min(width, width - dx)
                    for b in 0..<count {
                        let plane = x + (b * channels + c) * pixels
                        for y in 0..<height {
                            let sy = y + ky - 1
                            guard sy >= 0 && sy < height else { continue }
                            let src = row + b * pixels + y * width
                            let dst = plane + sy * width + dx
                            for xx in lo..<hi { dst[xx] += src[xx] }
                        }
                    }
                }
            }
        }
    }
}
