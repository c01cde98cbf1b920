// What a consumer does with one inference task, without any messaging: load (or reuse) the
// network and the images, evaluate the task's samples directly at its resolution.
import SRCore
import SRRoleSupport
import SRNeural
import SRProtocol
import SRStore

/// Evaluates inference tasks. Direct evaluation keeps consumers stateless with respect to
/// jobs: any consumer can compute any sample at any resolution (docs/NEURAL.md measures why
/// this beats carrying incremental state in messages).
public struct InferenceComputer: Sendable {
    public let store: OperandStore
    public let cache: PlaneCache

    public init(store: OperandStore, cache: PlaneCache) {
        self.store = store
        self.cache = cache
    }

    /// The logits of `task`'s samples. Blocking: call it from a `BlockingWork` queue. Throws
    /// `StoreError` (a missing or corrupt object) or `WireError` (a task that cannot be done).
    public func compute(_ task: InferenceTask, worker: String) throws -> InferencePartial {
        let clock = ContinuousClock()
        let start = clock.now
        let network = try self.network(task)
        let images = try self.images(task, inputSize: network.manifest.input.reduce(1, *))
        let inputs: [QuantizedTensor]
        do { inputs = try network.quantize(rows: images, task.indices) } catch { throw WireError("job \(task.job): \(error)") }
        let logits: [[Double]]
        do {
            let key = "\(task.model)|input \(task.inputPartition)|r\(task.resolution)"
            let cached = cache.value(for: key) { .resolution(network.operands(atResolution: task.resolution)) }
            guard case .resolution(let operands) = cached else { throw WireError("cache entry kind mismatch for \(key)") }
            logits = try DirectEvaluator(network: network).evaluate(inputs, resolution: task.resolution, operands: operands).map(\.values)
        } catch {
            throw WireError("job \(task.job): \(error)")
        }
        let elapsed = clock.now - start
        let micros = elapsed.wholeMicroseconds
        return InferencePartial(for: task, logits: logits, computeMicroseconds: micros, worker: worker)
    }

    /// The network of `task.model` split by the task's input partition (cached per pair).
    func network(_ task: InferenceTask) throws -> QuantizedNetwork {
        let key = "\(task.model)|input \(task.inputPartition)"
        let cached = try cache.value(for: key) {
            let model: Model
            do {
                model = try store.loadModel(digest: task.model)
            } catch let error as ModelError {
                throw WireError("model \(task.model) cannot be loaded: \(error)")
            }
            do {
                let network = try QuantizedNetwork(manifest: model.manifest, tensors: model.tensors,
                                                   inputPartition: PartitionVector(task.inputPartition))
                return .network(network)
            } catch {
                throw WireError("model \(task.model) cannot be refined with input partition \(task.inputPartition): \(error)")
            }
        }
        guard case .network(let network) = cached else { throw WireError("cache entry kind mismatch for \(key)") }
        guard network.resolutions == task.resolutions else {
            throw WireError("task \(task.task) says R = \(task.resolutions) but model \(task.model) has \(network.resolutions) resolutions")
        }
        return network
    }

    /// The images matrix, checked against the task (samples × the network's input size).
    func images(_ task: InferenceTask, inputSize: Int) throws -> Matrix<Double> {
        let cached = try cache.value(for: task.images) { .matrix(try store.load(digest: task.images)) }
        guard case .matrix(let images) = cached else { throw WireError("cache entry kind mismatch for \(task.images)") }
        guard images.rows == task.samples, images.columns == inputSize else {
            throw WireError("images \(task.images) are \(images.rows)×\(images.columns) but the job has \(task.samples) samples of \(inputSize) values")
        }
        return images
    }
}
