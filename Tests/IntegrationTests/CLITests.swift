// Bad input to the executables: non-zero exit and a message that names the problem.
import Foundation
import Testing

enum Executables {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// $SR_BIN_DIR (scripts/test.sh sets it), else .build/debug.
    static var binDir: String {
        ProcessInfo.processInfo.environment["SR_BIN_DIR"] ?? root.appendingPathComponent(".build/debug").path
    }

    static var available: Bool { FileManager.default.isExecutableFile(atPath: binDir + "/srproduce") }

    /// Runs an executable with a bound on its run time; returns (status, stdout + stderr).
    static func run(_ name: String, _ args: [String], environment: [String: String] = [:],
                    timeout: Duration = .seconds(30), input: Data? = nil) async throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binDir + "/" + name)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        let stdin = input.map { _ in Pipe() }
        if let stdin { p.standardInput = stdin } else { p.standardInput = FileHandle.nullDevice }
        let (exited, signal) = AsyncStream<Void>.makeStream()
        p.terminationHandler = { _ in signal.yield(); signal.finish() }
        try p.run()
        if let stdin, let input {
            // Written off this task: a pipe holds 64 KiB, the rest waits for the reader.
            Task.detached {
                stdin.fileHandleForWriting.write(input)
                try? stdin.fileHandleForWriting.close()
            }
        }
        let reader = Task.detached { pipe.fileHandleForReading.readDataToEndOfFile() }
        // Wait for the exit event, bounded: a hung process is terminated and fails the test.
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask { for await _ in exited { return true }; return true }
            group.addTask { try? await Task.sleep(for: timeout); return false }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
        if !finished { p.terminate() }
        p.waitUntilExit()
        let data = await reader.value
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

@Suite(.enabled(if: Executables.available, "build the executables first (scripts/test.sh does)"))
struct CLITests {
    let dir: String = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("sr-cli-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    func npy(_ name: String, _ values: [Double], shape: [Int]) throws -> String {
        let path = dir + "/" + name
        let header0 = "{'descr': '<f8', 'fortran_order': False, 'shape': (\(shape.map(String.init).joined(separator: ", "))\(shape.count == 1 ? "," : "")), }"
        var header = header0
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)]
        bytes += Array(header.utf8)
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func expectFailure(_ args: [String], mentions: [String], env: [String: String] = [:]) async throws {
        let (status, output) = try await Executables.run("srproduce", args, environment: env)
        #expect(status != 0, "srproduce \(args.joined(separator: " ")) exited 0:\n\(output)")
        for m in mentions {
            #expect(output.localizedCaseInsensitiveContains(m), "output does not mention '\(m)':\n\(output)")
        }
    }

    @Test func badInputIsRefusedWithAMessageNamingTheProblem() async throws {
        let a = try npy("a.npy", (0..<12).map { Double($0) / 8 }, shape: [3, 4])
        let x = try npy("x.npy", [0.5, 0.25, -0.5, 1], shape: [4])
        let x3 = try npy("x3.npy", [0.5, 0.25, -0.5], shape: [3])
        let xnan = try npy("xnan.npy", [0.5, .nan, -0.5, 1], shape: [4])
        let store = ["SR_STORE": dir + "/store", "SR_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F"]
        try await expectFailure(["matvec", "--matrix", dir + "/missing.npy", "--vector", x, "--deadline", "1s"],
                                mentions: ["missing.npy"], env: store)
        try await expectFailure(["matvec", "--matrix", a, "--vector", x3, "--deadline", "1s"],
                                mentions: ["shape", "4", "3"], env: store)
        try await expectFailure(["matvec", "--matrix", a, "--vector", xnan, "--deadline", "1s"],
                                mentions: ["nan", "xnan.npy"], env: store)
        try await expectFailure(["matvec", "--matrix", a, "--vector", x, "--deadline", "1s",
                                 "--partition-a", "0,-4", "--partition-x", "1,-3"],
                                mentions: ["outside the range", "2^0"], env: store)
        try await expectFailure(["matvec", "--matrix", "no-such-matrix", "--vector", x, "--deadline", "1s"],
                                mentions: ["no-such-matrix"], env: store)
        try await expectFailure(["matvec", "--matrix", a, "--vector", x, "--deadline", "1500"],
                                mentions: ["deadline", "has no unit"], env: store)
        // A negative value is read as the deadline (not taken for a flag) and refused with why.
        try await expectFailure(["matvec", "--matrix", a, "--vector", x, "--deadline", "-5ms"],
                                mentions: ["deadline", "'-5ms' is not positive"], env: store)
        try await expectFailure(["stream", "--matrix", a, "--deadline", "0s"],
                                mentions: ["deadline", "'0s' is not positive"], env: store)
        // A valid job against a broker that is not there.
        try await expectFailure(["matvec", "--matrix", a, "--vector", x, "--deadline", "1s"],
                                mentions: ["127.0.0.1:1"], env: store)
    }

    @Test func aMatrixCanBeRegisteredFromStandardInput() async throws {
        let store = dir + "/store"
        let values = (0..<12).map { Double($0) - 5.5 }
        let file = try npy("a.npy", values, shape: [3, 4])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        let env = ["SR_STORE": store]
        let (status, output) = try await Executables.run("srproduce", ["register", "piped", "--matrix", "-"], environment: env, input: bytes)
        #expect(status == 0, "\(output)")
        // The same digest as registering the file itself (content-addressed: the same bytes).
        let (status2, output2) = try await Executables.run("srproduce", ["register", "from-file", "--matrix", file], environment: env)
        #expect(status2 == 0 && output2 == output && output.count == 65, "stdin: \(output) file: \(output2)")
        let (empty, emptyOutput) = try await Executables.run("srproduce", ["register", "nothing", "--matrix", "-"], environment: env, input: Data())
        #expect(empty != 0 && emptyOutput.contains("standard input is empty"), "\(emptyOutput)")
    }

    @Test func rolesRefuseAnUnknownLogLevelOrFormat() async throws {
        for (role, args, mention) in [("sraggregate", ["--log-format", "yaml"], "log format 'yaml' is not text or json"),
                                      ("srconsume", ["--log-level", "loud"], "log level 'loud' is not one of")] {
            let (status, output) = try await Executables.run(role, args)
            #expect(status != 0 && output.contains(mention), "\(role) \(args): exit \(status)\n\(output)")
        }
    }

    @Test func metricsFlagsAreCheckedBeforeAnythingStarts() async throws {
        for (role, args, env, mention) in [
            ("sraggregate", ["--metrics-port", "70000"], [:], "metrics port 70000 is not in 1...65535"),
            ("srconsume", ["--metrics-port", "9464", "--metrics-host", "example.org"], [:], "metrics host 'example.org' is not an IP address"),
            ("sraggregate", [], ["SR_METRICS_PORT": "nine"], "SR_METRICS_PORT 'nine' is not a port number"),
            ("srproduce", ["top", "--metrics", "ftp://127.0.0.1:9464/metrics"], [:], "is not an http:// address"),
            ("srproduce", ["top", "--once", "--for", "1s"], [:], "give --once or --for, not both"),
        ] as [(String, [String], [String: String], String)] {
            let (status, output) = try await Executables.run(role, args, environment: env)
            #expect(status != 0 && output.contains(mention), "\(role) \(args) \(env): exit \(status)\n\(output)")
        }
    }

    @Test func badInferenceInputIsRefusedBeforeConnecting() async throws {
        let model = Executables.root.appendingPathComponent("Tests/Models/fashion-mnist-mlp").path
        let images = try npy("images.npy", (0..<(2 * 784)).map { Double($0 % 255) / 255 }, shape: [2, 784])
        let short = try npy("short.npy", [0.5, 0.25, 0.1], shape: [1, 3])
        let store = ["SR_STORE": dir + "/store", "SR_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F"]
        let base = ["infer", "--model", model, "--deadline", "1s"]
        try await expectFailure(base + ["--images", dir + "/none.npy"], mentions: ["none.npy"], env: store)
        try await expectFailure(base + ["--images", short], mentions: ["784", "3"], env: store)
        try await expectFailure(base + ["--images", images, "--count", "5"], mentions: ["2 images"], env: store)
        try await expectFailure(base + ["--images", images, "--exit", "margin:x"], mentions: ["'x' is not a number"], env: store)
        try await expectFailure(base + ["--images", images, "--exit", "confidence:1"], mentions: ["unknown exit rule family"], env: store)
        try await expectFailure(base + ["--images", images, "--exit", "gray-zone:0.3/0.6"], mentions: ["single logit"], env: store)
        try await expectFailure(base + ["--images", images, "--exit", "gray-zone"], mentions: ["srproduce model calibrate"], env: store)
        try await expectFailure(["infer", "--model", "no-such-model", "--images", images, "--deadline", "1s"],
                                mentions: ["no-such-model"], env: store)
        // A valid job against a broker that is not there.
        try await expectFailure(base + ["--images", images], mentions: ["127.0.0.1:1"], env: store)
    }

    @Test func badInferenceStreamInputIsRefusedBeforeConnecting() async throws {
        let model = Executables.root.appendingPathComponent("Tests/Models/fashion-mnist-mlp").path
        let images = try npy("stream.npy", (0..<(4 * 784)).map { Double($0 % 255) / 255 }, shape: [4, 784])
        let store = ["SR_STORE": dir + "/store", "SR_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F"]
        let base = ["infer-stream", "--model", model, "--images", images, "--deadline", "1s"]
        try await expectFailure(base + ["--batch", "0"], mentions: ["--batch must be in 1..."], env: store)
        try await expectFailure(base + ["--rate", "0"], mentions: ["--rate must be between"], env: store)
        try await expectFailure(base + ["--block", "0"], mentions: ["--block must be in 1..."], env: store)
        try await expectFailure(base + ["--batch", "5"], mentions: ["4 images are fewer than one job of --batch 5"], env: store)
        try await expectFailure(base + ["--exit", "margin:x"], mentions: ["'x' is not a number"], env: store)
        // Valid jobs against a broker that is not there.
        try await expectFailure(base + ["--batch", "2"], mentions: ["127.0.0.1:1"], env: store)
    }

    @Test func embeddedInferenceAnswersEveryImageWithoutABroker() async throws {
        let model = Executables.root.appendingPathComponent("Tests/Models/fashion-mnist-mlp").path
        let images = try npy("few.npy", (0..<(3 * 784)).map { Double(($0 * 7) % 256) / 255 }, shape: [3, 784])
        let (status, output) = try await Executables.run("srproduce", [
            "infer", "--embedded", "--model", model, "--images", images, "--deadline", "300s", "--exit", "none", "--json",
            "--out", dir + "/final.json"], environment: ["SR_STORE": dir + "/store"], timeout: .seconds(400))
        try #require(status == 0, "\(output)")
        let final = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/final.json"))) as? [String: Any]
        let answers = final?["answers"] as? [[String: Any]] ?? []
        #expect(final?["status"] as? String == "complete")
        #expect(answers.map { $0["resolution"] as? Int } == [6, 6, 6], "\(output)")
        #expect(answers.allSatisfy { (0..<10).contains($0["label"] as? Int ?? -1) })
    }
}
