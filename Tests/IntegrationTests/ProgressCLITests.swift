// `srproduce matvec --wait --progress always` on a real RabbitMQ: the aggregator's progress
// notices reach the client, which prints them (one line or one {type: progress} object each)
// before the refinements; every JSON object still says what it is.
import Foundation
import Testing

@Suite(.enabled(if: BrokerEnvironment.url != nil && ProcessInfo.processInfo.environment["SR_RABBITMQ_DIR"] != nil
                && Executables.available,
                "needs SR_AMQP_URL, SR_RABBITMQ_DIR and the executables (scripts/test.sh)"),
       .serialized, .timeLimit(.minutes(5)))
struct ProgressCLITests {
    @Test func progressNoticesReachTheClientBeforeTheFinal() async throws {
        let pool = try await ProcessKillTests.Pool()
        do {
            _ = try pool.spawn("sraggregate")
            _ = try pool.spawn("srconsume")
            let cli = CLITests()
            let a = try cli.npy("a.npy", (0..<24).map { Double($0 % 7) / 8 - 0.3 }, shape: [6, 4])
            let x = try cli.npy("x.npy", [0.5, -0.25, 1, 0.125], shape: [4])
            let env = ["SR_AMQP_URL": pool.url, "SR_STORE": pool.store]
            // One row per task: 6 tasks per layer, so the first partial leaves the job open and
            // its notice goes out.
            let base = ["matvec", "--matrix", a, "--vector", x, "--deadline", "120s", "--wait", "--row-block", "1",
                        "--chunks", "2", "--bits", "6", "--progress", "always"]

            let (status, output) = try await Executables.run("srproduce", base + ["--json"], environment: env, timeout: .seconds(90))
            #expect(status == 0, "exit \(status):\n\(output)")
            let objects = output.split(separator: "\n").filter { $0.hasPrefix("{") }
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(objects.allSatisfy { $0["type"] is String }, "\(output)")
            let progress = objects.filter { $0["type"] as? String == "progress" }
            #expect(!progress.isEmpty, "no progress object:\n\(output)")
            for p in progress {
                let layers = (p["layers"] as? [[Int]]) ?? []
                #expect(layers.count == 3 && layers.allSatisfy { $0.count == 2 && $0[1] == 6 && (0...6).contains($0[0]) }, "\(p)")
                #expect(layers.flatMap { $0 }.contains { $0 > 0 }, "a notice with nothing done: \(p)")
            }
            let final = try #require(objects.last)
            #expect(final["type"] as? String == "output" && final["status"] as? String == "complete", "\(final)")
            // Notices come before the final.
            let lastProgress = objects.lastIndex { $0["type"] as? String == "progress" } ?? -1
            #expect(lastProgress < objects.count - 1)

            let (status2, text) = try await Executables.run("srproduce", base, environment: env, timeout: .seconds(90))
            #expect(status2 == 0, "exit \(status2):\n\(text)")
            #expect(text.contains("layers ") && text.contains("/18 tasks") && text.contains("ms left"), "\(text)")
            #expect(text.contains("resolution 3/3  complete"), "\(text)")

            let (refused, why) = try await Executables.run("srproduce", ["matvec", "--matrix", a, "--vector", x, "--deadline", "1s",
                                                                         "--progress", "always"], environment: env, timeout: .seconds(60))
            #expect(refused != 0 && why.contains("--progress always needs --wait"), "exit \(refused):\n\(why)")
        } catch {
            await pool.finish()
            throw error
        }
        await pool.finish()
    }
}
