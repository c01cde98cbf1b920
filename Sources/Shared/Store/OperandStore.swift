// The operand store: matrices registered once, content-addressed by SHA-256, written
// atomically, shared by producers and consumers (a docker volume in compose; SR_STORE).
import SRCore
import SRFormats
import Foundation

/// A directory of immutable operands:
///
///     <root>/objects/<sha256>.npy   the matrix as canonical float64 C-order .npy
///     <root>/names/<name>           the digest a human name points to (re-registering moves it)
///
/// The digest is the SHA-256 of the canonical .npy bytes, so identical matrices share one
/// object and a reader can verify what it loaded. Writes go to a temporary file in the same
/// directory and are renamed into place, so readers never see a partial file.
public struct OperandStore: Sendable {
    public let root: String

    /// A store at `root` (created on first write).
    public init(root: String) {
        self.root = root
    }

    /// Names: letters, digits, `.`, `_`, `-`; 1–128 characters; not starting with `.`.
    public static func isValidName(_ name: String) -> Bool {
        guard (1...128).contains(name.count), !name.hasPrefix(".") else { return false }
        return name.unicodeScalars.allSatisfy { $0.properties.isASCIIHexDigit || ("a"..."z").contains($0)
            || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0) }
    }

    public static func isDigest(_ s: String) -> Bool {
        Digest.isValid(s)
    }

    func objectPath(_ digest: String) -> String { "\(root)/objects/\(digest).npy" }
    package func namePath(_ name: String) -> String { "\(root)/names/\(name)" }

    /// Stores `matrix` (validated finite), names it `name` if given, derives what per-job
    /// planning needs (its summary and A's statistics for `prepare`'s partitions; see
    /// OperandSummary.swift) and returns its digest.
    @discardableResult
    public func register(_ matrix: Matrix<Double>, name: String?,
                        prepare chunkings: [(chunks: Int, bits: Int)] = OperandStore.defaultPreparedChunkings) throws(StoreError) -> String {
        if let bad = matrix.elements.firstIndex(where: { !$0.isFinite }) {
            throw StoreError(.invalidOperand, "the matrix has a non-finite value (\(matrix.elements[bad])) at [\(bad / max(matrix.columns, 1)), \(bad % max(matrix.columns, 1))]; operands must be finite")
        }
        if let name, !Self.isValidName(name) {
            throw StoreError(.invalidName, "'\(name)' is not a valid operand name: use 1–128 letters, digits, '.', '_' or '-', not starting with '.'")
        }
        let bytes = Npy.encode(Npy.array(matrix))
        let digest = SHA256.hexDigest(bytes)
        try ensureDirectory("\(root)/objects")
        if !FileManager.default.fileExists(atPath: objectPath(digest)) {
            try writeAtomically(bytes, to: objectPath(digest))
        }
        try prepare(matrix, digest: digest, partitions: Self.preparedPartitions(for: matrix, chunkings: chunkings))
        if let name {
            try ensureDirectory("\(root)/names")
            try writeAtomically(Array((digest + "\n").utf8), to: namePath(name))
        }
        return digest
    }

    /// The digest for a name or a digest (a 64-hex string is taken as a digest if present).
    public func resolve(_ reference: String) throws(StoreError) -> String {
        if Self.isDigest(reference), FileManager.default.fileExists(atPath: objectPath(reference))
            || FileManager.default.fileExists(atPath: "\(root)/objects/\(reference).safetensors") {
            return reference
        }
        guard Self.isValidName(reference) else {
            throw StoreError(.notFound, "'\(reference)' is neither a registered name nor a stored digest in \(root)")
        }
        guard let data = FileManager.default.contents(atPath: namePath(reference)) else {
            let known = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/names"))?.sorted() ?? []
            throw StoreError(.notFound, "no operand named '\(reference)' in \(root)" + (known.isEmpty
                ? " (the store is empty; register one with `srproduce register NAME --matrix A.npy`)"
                : " (known: \(known.prefix(10).joined(separator: ", "))\(known.count > 10 ? ", …" : ""))"))
        }
        let digest = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard Self.isDigest(digest) else {
            throw StoreError(.corrupt, "\(namePath(reference)) does not hold a SHA-256 digest; re-register '\(reference)'")
        }
        return digest
    }

    /// Loads the matrix with `digest`, verifying that its bytes still hash to it.
    public func load(digest: String) throws(StoreError) -> Matrix<Double> {
        guard Self.isDigest(digest) else { throw StoreError(.notFound, "'\(digest)' is not a SHA-256 digest") }
        let path = objectPath(digest)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StoreError(.notFound, "operand \(digest) is not in the store \(root); is SR_STORE the same directory (volume) for every role?")
        }
        let bytes = [UInt8](data)
        guard SHA256.hexDigest(bytes) == digest else {
            throw StoreError(.corrupt, "\(path) does not match its digest; the store is corrupt — re-register the matrix")
        }
        do {
            return try Npy.matrix(from: Npy.decode(bytes, source: path), source: path)
        } catch {
            throw StoreError(.corrupt, "\(path): \(error)")
        }
    }

    func ensureDirectory(_ path: String) throws(StoreError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw StoreError(.io, "cannot create the store directory \(path): \(error.localizedDescription); set SR_STORE to a writable directory")
        }
    }

    func writeAtomically(_ bytes: [UInt8], to path: String, creating directory: String) throws(StoreError) {
        try ensureDirectory(directory)
        try writeAtomically(bytes, to: path)
    }

    func writeAtomically(_ bytes: [UInt8], to path: String) throws(StoreError) {
        do {
            try AtomicFile.write(bytes, to: path)
        } catch {
            throw StoreError(.io, "\(error); is the store directory writable?")
        }
    }
}

/// An operand-store failure.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable { case notFound, invalidName, invalidOperand, corrupt, io }
    public let code: Code
    public let message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
