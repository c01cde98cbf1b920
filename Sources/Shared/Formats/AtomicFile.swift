// Writing a file so that readers (other workers, Python) never see half of it, and so that a
// file of more than 2 GiB is written whole: Foundation's `Data.write(to:)` and
// `FileManager.createFile` on Linux repeat the buffer's first bytes after the 0x7ffff000 bytes a
// single write(2) takes (measured here: a 2 GiB operand's stored bytes no longer matched its
// digest). A plain write(2) loop that advances by what each call wrote has no such limit.
import Foundation

/// A failed file write: the path and the operating system's reason.
public struct FileWriteError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): cannot write: \(reason)" }
}

public enum AtomicFile {
    /// Writes `bytes` to `path`: into a temporary file in the same directory, flushed to disk,
    /// then renamed over `path` (atomic on POSIX file systems).
    public static func write(_ bytes: some ContiguousBytes, to path: String) throws(FileWriteError) {
        let directory = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temporary = (directory.isEmpty ? "." : directory) + "/.\(name).\(UUID().uuidString).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileWriteError(path: path, reason: String(cString: strerror(errno))) }
        var failure: String?
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                offset += n
            }
        }
        if failure == nil, fsync(fd) != 0 { failure = "fsync: " + String(cString: strerror(errno)) }
        if close(fd) != 0, failure == nil { failure = "close: " + String(cString: strerror(errno)) }
        if failure == nil, rename(temporary, path) != 0 {
            failure = "rename of the temporary file failed: " + String(cString: strerror(errno))
        }
        if let failure {
            unlink(temporary)
            throw FileWriteError(path: path, reason: failure)
        }
    }
}
