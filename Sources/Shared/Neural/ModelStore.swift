// Networks in the operand store: one self-contained .safetensors object (weights plus the
// manifest in its metadata), content-addressed like matrices, so consumers load them by digest.
import SRFormats
import SRStore
import Foundation

extension OperandStore {
    func modelPath(_ digest: String) -> String { "\(root)/objects/\(digest).safetensors" }

    /// Validates `model`, stores it as one .safetensors object, names it, returns its digest.
    @discardableResult
    public func register(model: Model, name: String?) throws -> String {
        try model.validate()
        if let name, !Self.isValidName(name) {
            throw StoreError(.invalidName, "'\(name)' is not a valid operand name: use 1–128 letters, digits, '.', '_' or '-', not starting with '.'")
        }
        let json = String(decoding: Model.encodeManifest(model.manifest, pretty: false), as: UTF8.self)
        let bytes = Safetensors.encode(Safetensors.File(tensors: model.tensors, metadata: [ModelManifest.formatName: json]))
        let digest = SHA256.hexDigest(bytes)
        try FileManager.default.createDirectory(atPath: "\(root)/objects", withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: modelPath(digest)) {
            // Exactly the hashed bytes, written atomically (temporary file + rename).
            try AtomicFile.write(bytes, to: modelPath(digest))
        }
        if let name {
            try FileManager.default.createDirectory(atPath: "\(root)/names", withIntermediateDirectories: true)
            try AtomicFile.write(Array((digest + "\n").utf8), to: namePath(name))
        }
        return digest
    }

    /// Loads the model with `digest`, verifying its bytes.
    public func loadModel(digest: String) throws -> Model {
        let path = modelPath(digest)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StoreError(.notFound, "model \(digest) is not in the store \(root); register it with `srproduce register NAME --model DIR`")
        }
        guard SHA256.hexDigest([UInt8](data)) == digest else {
            throw StoreError(.corrupt, "\(path) does not match its digest; re-register the model")
        }
        return try Model.load(from: path)
    }

    /// The digest of a registered model by name or digest.
    public func resolveModel(_ reference: String) throws -> String {
        if Self.isDigest(reference), FileManager.default.fileExists(atPath: modelPath(reference)) { return reference }
        let digest = try resolve(reference)
        guard FileManager.default.fileExists(atPath: modelPath(digest)) else {
            throw StoreError(.notFound, "'\(reference)' names a matrix, not a model")
        }
        return digest
    }
}
