// Inference messages and exit-rule text: round trips, and malformed input refused with a
// message that says what is wrong (it becomes the sr-dead-reason).
import Foundation
import Testing
@testable import SRCore
@testable import SRProtocol
@testable import SRTransport

@Suite struct InferenceWireTests {
    let digest = String(repeating: "ab", count: 32)

    func job(samples: Int = 10, rule: String = "margin:0.5,0.25", classes: Int = 3, block: Int = 4) -> InferenceJob {
        InferenceJob(id: "job-1", model: digest, images: digest, samples: samples, inputPartition: [1, -1, -3],
                     resolutions: 2, classes: classes, exitRule: rule, blockSize: block,
                     createdMs: 1_800_000_000_000, deadline: Deadline(epochMs: 1_800_000_001_000))
    }

    @Test func exitRulesReadBackFromTheirText() throws {
        #expect(try ExitRule(parsing: "margin:0.27,0.5") == .margin([0.27, 0.5]))
        #expect(try ExitRule(parsing: "stability:0,inf") == .stability(margin: [0, .infinity]))
        #expect(try ExitRule(parsing: "entropy:-inf,1.25") == .entropy([-.infinity, 1.25]))
        #expect(try ExitRule(parsing: "none") == .stability(margin: [.infinity]))
        #expect(try ExitRule(parsing: "final") == .margin([.infinity]))
        for rule: ExitRule in [.margin([0.1, 0.30000000000000004]), .entropy([1e-9]), .stability(margin: [0.5]), .margin([.infinity]),
                               .stability(margin: [.infinity])] {
            #expect(try ExitRule(parsing: rule.text) == rule, "\(rule.text)")
        }
        let zone = try ExitRule(parsing: "gray-zone:0.3/0.6")
        guard case .grayZone(let z) = zone else { Issue.record("not a gray zone"); return }
        #expect(abs(z[0].probabilities.lowerBound - 0.3) < 1e-12 && abs(z[0].probabilities.upperBound - 0.6) < 1e-12)
        // Gray zones are written in logits, so even saturated or tiny ones read back exactly.
        for rule: ExitRule in [zone, .grayZone([.init(low: -5, high: 5.000000000000019), .init(low: -40, high: 1e-5)])] {
            #expect(try ExitRule(parsing: rule.text) == rule, "\(rule.text)")
        }
        for (bad, mention) in [("margin", "needs thresholds"), ("margin:", "needs thresholds"), ("margin:1,x", "'x' is not a number"),
                               ("size:1", "unknown exit rule family"), ("gray-zone:0.6/0.3", "LOW/HIGH"), ("gray-zone:0.3-0.6", "LOW/HIGH"), ("gray-zone-logits:2/1", "LOW ≤ HIGH"), ("margin:nan", "not a number")] {
            #expect(throws: EarlyExitError.self, "\(bad)") { try ExitRule(parsing: bad) }
            do { _ = try ExitRule(parsing: bad) } catch { #expect(error.message.contains(mention), "\(bad): \(error.message)") }
        }
    }

    @Test func tasksPartialsAndOutputsRoundTrip() throws {
        let j = job()
        let task = InferenceTask(job: j, resolution: 2, indices: [1, 4, 9])
        let message = task.encode(expiration: .seconds(1))
        #expect(message.priority == Topology.taskPriority(layer: 1))
        #expect(try InferenceTask(decoding: message) == task)
        let partial = InferencePartial(for: task, logits: [[1, 2, 3], [0.5, -1, 0], [-0.25, 0, 8]], computeMicroseconds: 7, worker: "w")
        #expect(try InferencePartial(decoding: partial.encode()) == partial)
        let output = InferenceOutput(job: "job-1", status: .deadline, resolutions: 2, elapsedMs: 1001, lateMs: 1, skipped: 3,
                                     answers: [.init(sample: 0, label: 2, resolution: 2, margin: 1, decided: true, logits: [1, 2, 3]),
                                               .init(sample: 1, label: -1, resolution: 0, margin: 0, decided: false, logits: [])])
        let decoded = try InferenceOutput(decoding: try output.encode())
        #expect(decoded == output)
        #expect(output.routingKey == "job.job-1.final")
        #expect(try InferenceOpen(decoding: try InferenceOpen(job: j).encode()).job == j)
    }

    @Test func malformedMessagesAreRefusedWithAReason() throws {
        let j = job()
        func refuses(_ m: Message, _ mention: String, decode: (Message) throws -> Void) {
            do {
                try decode(m)
                Issue.record("accepted a message that should mention '\(mention)'")
            } catch {
                #expect("\(error)".contains(mention), "\(error)")
            }
        }
        let task = InferenceTask(job: j, resolution: 1, indices: [0, 1]).encode(expiration: nil)
        var unordered = task
        unordered.body = LittleEndian.bytes([UInt32(3), 2])
        refuses(unordered, "strictly increasing") { _ = try InferenceTask(decoding: $0) }
        var outside = task
        outside.body = LittleEndian.bytes([UInt32(10)])
        refuses(outside, "below 10") { _ = try InferenceTask(decoding: $0) }
        var empty = task
        empty.body = []
        refuses(empty, "UInt32 sample indices") { _ = try InferenceTask(decoding: $0) }
        var noModel = task
        noModel.headers[Header.model] = .string("model.safetensors")
        refuses(noModel, "SHA-256") { _ = try InferenceTask(decoding: $0) }
        var beyond = task
        beyond.headers[Header.resolution] = .int(3)
        refuses(beyond, "outside 1...2") { _ = try InferenceTask(decoding: $0) }

        let partial = InferencePartial(for: InferenceTask(job: j, resolution: 1, indices: [0]), logits: [[1, 2, 3]],
                                       computeMicroseconds: 0, worker: "w").encode()
        var short = partial
        short.body.removeLast()
        refuses(short, "expected") { _ = try InferencePartial(decoding: $0) }
        var nan = partial
        nan.body = LittleEndian.bytes([UInt32(0)]) + LittleEndian.bytes([1.0, .nan, 3])
        refuses(nan, "NaN") { _ = try InferencePartial(decoding: $0) }

        for (bad, mention) in [(job(block: 0), "blockSize"), (job(rule: "gray-zone:0.3/0.6"), "single logit"),
                               (job(samples: 0), "samples"), (job(rule: "margin:q"), "not a number")] {
            refuses(try InferenceOpen(job: bad).encode(), mention) { _ = try InferenceOpen(decoding: $0) }
        }
    }
}
