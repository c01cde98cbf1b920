import Foundation
import Logging
import Synchronization
import Testing
@testable import SRCLISupport

@Suite struct JSONLogHandlerTests {
    /// Each line parsed back by Foundation's JSON reader (an independent parser).
    func lines(_ body: (inout Logger) -> Void) throws -> [[String: Any]] {
        let sink = Mutex<[String]>([])
        var logger = Logger(label: "sraggregate") { label in
            JSONLogHandler(label: label) { line in sink.withLock { $0.append(line) } }
        }
        logger.logLevel = .debug
        body(&logger)
        return try sink.withLock { $0 }.map { line in
            #expect(!line.contains("\n"), "a JSON log line spans lines: \(line)")
            return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
    }

    @Test func oneObjectPerEventWithTheFixedFieldsAndTheMetadata() throws {
        let objects = try lines { logger in
            logger[metadataKey: "role"] = "aggregator"
            logger.info("refinement", metadata: ["job.id": "j1", "resolution": "2/3", "bound": "\(1.5e-3)",
                                                 "reason": "quote \" backslash \\ newline \n tab \t bell \u{7}",
                                                 "blocks": .array(["0", "1"]), "message": "shadowed"])
            logger.trace("below the level")
        }
        #expect(objects.count == 1)
        let o = objects[0]
        #expect(o["level"] as? String == "info" && o["label"] as? String == "sraggregate" && o["message"] as? String == "refinement")
        #expect(o["job.id"] as? String == "j1" && o["resolution"] as? String == "2/3" && o["role"] as? String == "aggregator")
        #expect(o["reason"] as? String == "quote \" backslash \\ newline \n tab \t bell \u{7}")
        #expect(o["blocks"] as? [String] == ["0", "1"])
        #expect(o["meta.message"] as? String == "shadowed")
        let ts = try #require(o["ts"] as? String)
        #expect(ts.count == 24 && ts.hasSuffix("Z") && ISO8601DateFormatter().date(from: ts.replacingOccurrences(of: #"\.\d{3}"#, with: "", options: .regularExpression)) != nil, "\(ts)")
    }

    @Test func levelAndFormatAreValidatedWithAMessage() {
        #expect(throws: LoggingError.self) { try RoleEnvironment.logLevel("loud").get() }
        #expect(throws: LoggingError.self) { try RoleEnvironment.logFormat("yaml").get() }
        #expect((try? RoleEnvironment.logLevel("DEBUG").get()) == .debug)
        #expect((try? RoleEnvironment.logFormat("json").get()) == .json)
    }
}
