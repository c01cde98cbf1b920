import Foundation
import Testing
@testable import SRFormats

@Suite struct AtomicFileTests {
    /// Reads `count` bytes at `offset` with pread(2), independently of the code under test.
    func bytes(_ path: String, at offset: Int, count: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: count)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return Array(out.prefix(max(n, 0)))
    }

    /// Past 0x7ffff000 bytes (the most one write(2) takes on Linux) Foundation's writers repeat
    /// the buffer's start; a 2 GiB operand then no longer matched its digest. The buffer is
    /// anonymous memory that stays mostly untouched (zero pages), so the test needs little RAM.
    @Test func writesMoreThanOneWriteCallTakes() throws {
        let count = 0x7fff_f000 + 3 * 4096
        let raw = try #require(mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        try #require(raw != MAP_FAILED)
        defer { munmap(raw, count) }
        let buffer = UnsafeMutableRawBufferPointer(start: raw, count: count)
        let marks = [0, 4095, 0x7fff_f000 - 1, 0x7fff_f000, 0x7fff_f000 + 4097, count - 1]
        for (k, offset) in marks.enumerated() { buffer[offset] = UInt8(17 + k) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/big.bin"
        try AtomicFile.write(UnsafeRawBufferPointer(buffer), to: path)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(size == count)
        for (k, offset) in marks.enumerated() {
            #expect(bytes(path, at: offset, count: 1) == [UInt8(17 + k)], "byte \(offset)")
        }
        // Nothing else is left in the directory (the temporary file was renamed).
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["big.bin"])
    }

    @Test func replacesAnExistingFileAndReportsAnUnwritableDirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AtomicFile.write([1, 2, 3] as [UInt8], to: dir + "/f")
        try AtomicFile.write([9] as [UInt8], to: dir + "/f")
        #expect(FileManager.default.contents(atPath: dir + "/f") == Data([9]))
        let error = #expect(throws: FileWriteError.self) { try AtomicFile.write([1] as [UInt8], to: dir + "/no-such-dir/f") }
        #expect(error?.description.contains("No such file or directory") == true)
    }
}
