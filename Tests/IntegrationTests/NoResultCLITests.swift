// A job that gets nothing computed by its deadline must not look like an answer: with an
// aggregator and no consumer on a real RabbitMQ, `srproduce matvec --wait` says "no result by
// the deadline", exits 3, and leaves --out unwritten unless --out-empty asks for the zeros.
import Foundation
import Testing

@Suite(.enabled(if: BrokerEnvironment.url != nil && ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"] != nil
                && Executables.available,
                "needs SR_AMQP_URL, SR_RABBITMQ_DIR and the executables (scripts/test.sh)"),
       .serialized, .timeLimit(.minutes(5)))
struct NoResultCLITests {
    @Test func nothingComputedByTheDeadlineIsSaidAndExitsThree() async throws {
        let pool = try await ProcessKillTests.Pool()
        do {
            _ = try pool.spawn("sraggregate")   // and no consumer: no task is ever computed
            let cli = CLITests()
            let a = try cli.npy("a.npy", (0..<16).map { Double($0) / 16 }, shape: [4, 4])
            let x = try cli.npy("x.npy", [0.5, -0.25, 1, 0.125], shape: [4])
            let env = ["SR_AMQP_URL": pool.url, "SR_STORE": pool.store]
            let out = pool.dir + "/y.npy"
            let base = ["matvec", "--matrix", a, "--vector", x, "--deadline", "400ms", "--wait", "--out", out]

            let (status, output) = try await Executables.run("srproduce", base + ["--json"], environment: env, timeout: .seconds(60))
            #expect(status == 3, "exit \(status):\n\(output)")
            #expect(output.contains("no result by the deadline"), "\(output)")
            #expect(!FileManager.default.fileExists(atPath: out), "an all-zero y was written:\n\(output)")
            // Every JSON line says what it is; the final one is resolution 0 at the deadline,
            // answered after it (late_ms ≥ 0).
            let objects = output.split(separator: "\n").filter { $0.hasPrefix("{") }
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(objects.count >= 2 && objects.allSatisfy { $0["type"] is String }, "\(output)")
            let final = try #require(objects.last)
            #expect(final["type"] as? String == "output" && final["status"] as? String == "deadline"
                    && final["resolution"] as? Int == 0, "\(final)")
            #expect(((final["late_ms"] as? Double) ?? -1) >= 0, "\(final)")

            let (status2, output2) = try await Executables.run("srproduce", base + ["--out-empty"], environment: env, timeout: .seconds(60))
            #expect(status2 == 3, "exit \(status2):\n\(output2)")
            #expect(output2.contains("no result by the deadline: nothing computed in time"), "\(output2)")
            #expect(FileManager.default.fileExists(atPath: out), "--out-empty did not write y:\n\(output2)")

            // A deadline fired by hand says what came of it: nothing computed (3), or no such
            // job (4) — never a bare "deadline fired".
            let id = "by-hand-\(UInt32.random(in: 0...UInt32.max))"
            let (submitted, printed) = try await Executables.run(
                "srproduce", ["matvec", "--matrix", a, "--vector", x, "--deadline", "10min", "--id", id],
                environment: env, timeout: .seconds(60))
            #expect(submitted == 0, "\(printed)")
            let (fired, firedOutput) = try await Executables.run("srproduce", ["deadline", id, "--timeout", "30s"], environment: env, timeout: .seconds(60))
            #expect(fired == 3 && firedOutput.contains("no result by the deadline"), "exit \(fired):\n\(firedOutput)")
            let (unknown, unknownOutput) = try await Executables.run("srproduce", ["deadline", "no-such-job", "--timeout", "2s"],
                                                                     environment: env, timeout: .seconds(60))
            #expect(unknown == 4 && unknownOutput.contains("does not know this job"), "exit \(unknown):\n\(unknownOutput)")
        } catch {
            await pool.finish()
            throw error
        }
        await pool.finish()
    }
}
