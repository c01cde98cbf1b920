// Training in Swift: softmax (or sigmoid) cross-entropy, backpropagation through every layer
// kind, SGD with momentum or Adam, seeded He initialisation and shuffling so runs reproduce.
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

        for epoch in 0..<epochs {
            let started = clock.now
            shuffle(&order, using: &shuffler)
            var lossSum: Double = 0
            var correct = 0
            var start = 0
            while start < data.count {
                let n = min(batchSize, data.count - start)
                var x = [Float]()
                x.reserveCapacity(n * inputSize)
                var labels = [UInt8]()
                labels.reserveCapacity(n)
                for k in order[start..<(start + n)] {
                    x.append(contentsOf: data.images[(k * inputSize)..<((k + 1) * inputSize)])
                    labels.append(data.labels[k])
                }
                let step = network.lossAndGradients(x, labels: labels, count: n, parameters: parameters)
                lossSum += Double(step.loss) * Double(n)
                correct += zip(network.predictions(step.output, count: n), labels).filter { $0 == Int($1) }.count
                state.update(&parameters, gradients: step.gradients, learningRate: learningRate)
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
        let step = network.lossAndGradients(images, labels: labels, count: labels.count,
                                            parameters: network.parameters(of: model))
        var gradients: [String: Tensor] = [:]
        for (i, name) in network.parameterNames.enumerated() {
            gradients[name] = Tensor(shape: network.parameterShapes[i], values: step.gradients[i])
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
    /// One step's quantities: mean loss, the outputs (logits) and a gradient per parameter.
    struct Step {
        var loss: Float
        var output: [Float]
        var gradients: [[Float]]
    }

    func lossAndGradients(_ x: [Float], labels: [UInt8], count: Int, parameters: [[Float]]) -> Step {
        var trace: Trace? = Trace()
        let output = forward(x, count: count, parameters: parameters, trace: &trace)
        let (loss, outputGradient) = lossAndGradient(output, labels: labels, count: count)
        let gradients = backward(trace!, outputGradient: outputGradient, count: count, parameters: parameters)
        return Step(loss: loss, output: output, gradients: gradients)
    }

    /// Mean cross-entropy of logits `[count, outputSize]` and its gradient with respect to them:
    /// softmax − one-hot (or σ(z) − y for a sigmoid head), divided by the batch size.
    func lossAndGradient(_ z: [Float], labels: [UInt8], count: Int) -> (Float, [Float]) {
        let k = outputSize
        var gradient = z
        var loss: Double = 0
        let scale = 1 / Float(max(count, 1))
        gradient.withUnsafeMutableBufferPointer { g in
            for row in 0..<count {
                let label = Int(labels[row])
                if head == .sigmoid {
                    let v = g[row], y = Float(label)
                    // softplus(v) − y·v, written to stay finite for large |v|.
                    loss += Double(max(v, 0) - y * v + log1pf(expf(-abs(v))))
                    g[row] = (1 / (1 + expf(-v)) - y) * scale
                    continue
                }
                let r = UnsafeMutableBufferPointer(rebasing: g[(row * k)..<((row + 1) * k)])
                let m = r.max() ?? 0
                var sum: Float = 0
                for j in r.indices { r[j] = expf(r[j] - m); sum += r[j] }
                loss += Double(logf(sum) + m - z[row * k + label])
                for j in r.indices { r[j] = r[j] / sum * scale }
                r[label] -= scale
            }
        }
        return (Float(loss / Double(max(count, 1))), gradient)
    }

    /// Backpropagates `outputGradient` through the ops, returning a gradient per parameter.
    func backward(_ trace: Trace, outputGradient: [Float], count: Int, parameters: [[Float]]) -> [[Float]] {
        var gradients = parameters.map { [Float](repeating: 0, count: $0.count) }
        var g = outputGradient
        for i in ops.indices.reversed() {
            // The first op's input gradient is the image's: nobody needs it.
            let needsInput = i > 0
            switch ops[i] {
            case .dense(let w, let b, let inputs, let outputs):
                let x = trace.activations[i]
                g.withUnsafeBufferPointer { gp in
                    x.withUnsafeBufferPointer { xp in
                        gradients[w].withUnsafeMutableBufferPointer { dw in
                            // dW [out, in] += gᵀ [out, B] · x [B, in]
                            BLAS.gemm(transposeA: true, transposeB: false, m: outputs, n: inputs, k: count,
                                      a: gp.baseAddress!, lda: outputs, b: xp.baseAddress!, ldb: inputs,
                                      beta: 1, c: dw.baseAddress!, ldc: inputs)
                        }
                    }
                    gradients[b].withUnsafeMutableBufferPointer { db in
                        for row in 0..<count {
                            for j in 0..<outputs { db[j] += gp[row * outputs + j] }
                        }
                    }
                }
                if needsInput {
                    var dx = [Float](repeating: 0, count: count * inputs)
                    g.withUnsafeBufferPointer { gp in
                        parameters[w].withUnsafeBufferPointer { wp in
                            dx.withUnsafeMutableBufferPointer { dp in
                                // dx [B, in] = g [B, out] · W [out, in]
                                BLAS.gemm(transposeA: false, transposeB: false, m: count, n: inputs, k: outputs,
                                          a: gp.baseAddress!, lda: outputs, b: wp.baseAddress!, ldb: inputs,
                                          c: dp.baseAddress!, ldc: inputs)
                            }
                        }
                    }
                    g = dx
                }
            case .conv(let w, let b, let c, let oc, let h, let wd):
                // Moved out and back (not copied) so the two inout arguments do not overlap.
                var dw = [Float](), db = [Float]()
                swap(&dw, &gradients[w])
                swap(&db, &gradients[b])
                g = convBackward(g, columns: trace.columns[i]!, count: count, weights: parameters[w],
                                 dWeights: &dw, dBias: &db, channels: c, outChannels: oc,
                                 height: h, width: wd, needsInput: needsInput)
                swap(&dw, &gradients[w])
                swap(&db, &gradients[b])
            case .maxpool(let c, let h, let wd):
                var dx = [Float](repeating: 0, count: count * c * h * wd)
                let winners = trace.argmax[i]!
                dx.withUnsafeMutableBufferPointer { dp in
                    for (k, source) in winners.enumerated() { dp[source] += g[k] }
                }
                g = dx
            case .relu:
                let y = trace.activations[i + 1]
                g.withUnsafeMutableBufferPointer { gp in
                    y.withUnsafeBufferPointer { yp in
                        for k in gp.indices where !(yp[k] > 0) { gp[k] = 0 }
                    }
                }
            case .flatten:
                break
            }
        }
        return gradients
    }

    /// Gradients of a 3×3 convolution from its output gradient `g` [B, outC, H·W]: weights and
    /// bias accumulate; returns the input gradient [B, C, H, W] (empty when not needed).
    private func convBackward(_ g: [Float], columns: [Float], count: Int, weights: [Float],
                              dWeights: inout [Float], dBias: inout [Float], channels: Int, outChannels: Int,
                              height: Int, width: Int, needsInput: Bool) -> [Float] {
        let pixels = height * width
        let stride = count * pixels
        let inner = channels * 9
        // sgemm's layout: [outC, B·H·W].
        var g2 = [Float](repeating: 0, count: outChannels * stride)
        g.withUnsafeBufferPointer { gp in
            g2.withUnsafeMutableBufferPointer { tp in
                for b in 0..<count {
                    for o in 0..<outChannels {
                        (tp.baseAddress! + o * stride + b * pixels)
                            .update(from: gp.baseAddress! + (b * outChannels + o) * pixels, count: pixels)
                    }
                }
            }
        }
        g2.withUnsafeBufferPointer { tp in
            columns.withUnsafeBufferPointer { cp in
                dWeights.withUnsafeMutableBufferPointer { dw in
                    BLAS.gemm(transposeA: false, transposeB: true, m: outChannels, n: inner, k: stride,
                              a: tp.baseAddress!, lda: stride, b: cp.baseAddress!, ldb: stride,
                              beta: 1, c: dw.baseAddress!, ldc: inner)
                }
            }
            dBias.withUnsafeMutableBufferPointer { db in
                for o in 0..<outChannels {
                    var s: Float = 0
                    for k in 0..<stride { s += tp[o * stride + k] }
                    db[o] += s
                }
            }
        }
        guard needsInput else { return [] }
        var dColumns = [Float](repeating: 0, count: inner * stride)
        g2.withUnsafeBufferPointer { tp in
            weights.withUnsafeBufferPointer { wp in
                dColumns.withUnsafeMutableBufferPointer { dp in
                    BLAS.gemm(transposeA: true, transposeB: false, m: inner, n: stride, k: outChannels,
                              a: wp.baseAddress!, lda: inner, b: tp.baseAddress!, ldb: stride,
                              c: dp.baseAddress!, ldc: stride)
                }
            }
        }
        return Network.col2im(dColumns, count: count, channels: channels, height: height, width: width)
    }

    /// The adjoint of ``im2col``: sums every column entry back onto the pixel it was copied from.
    static func col2im(_ cols: [Float], count: Int, channels: Int, height: Int, width: Int) -> [Float] {
        let pixels = height * width
        let stride = count * pixels
        var x = [Float](repeating: 0, count: count * channels * pixels)
        cols.withUnsafeBufferPointer { cp in
            x.withUnsafeMutableBufferPointer { xp in
                for c in 0..<channels {
                    for ky in 0..<3 {
                        for kx in 0..<3 {
                            let row = cp.baseAddress! + ((c * 3 + ky) * 3 + kx) * stride
                            let dx = kx - 1
                            let lo = max(0, -dx), hi = min(width, width - dx)
                            for b in 0..<count {
                                let plane = xp.baseAddress! + (b * channels + c) * pixels
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
        return x
    }
}
