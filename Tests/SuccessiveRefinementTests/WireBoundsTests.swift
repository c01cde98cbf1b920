// Bounds on what a peer's message may contain: header nesting and size, ids, and sizes that
// could not travel as one broker message. Expected verdicts are written out here, not derived
// from the code under test.
import Testing
import SRCore
@testable import SRProtocol
@testable import SRTransport

@Suite struct WireBoundsTests {
    static func nested(_ depth: Int) -> HeaderValue {
        var v = HeaderValue.int(1)
        for _ in 0..<depth { v = .array([v]) }
        return v
    }

    @Test func headersNestedUpToEightLevelsPassAndDeeperOnesAreMarked() {
        // depth counts containers below the top-level table: x-death is table → array → table.
        #expect(HeaderBounds.fault(in: ["x": Self.nested(8)]) == nil)
        #expect(HeaderBounds.fault(in: ["x": Self.nested(9)])?.contains("deeper than 8") == true)
        #expect(HeaderBounds.fault(in: ["x": Self.nested(1000)])?.contains("deeper") == true)
        let marked = HeaderBounds.checked(Message(headers: ["sr-version": .int(1), "sr-kind": .string("task"), "x": Self.nested(20)]))
        #expect(throws: WireError.self) { try TaskMessage(decoding: marked) }
    }

    @Test func tooManyHeaderEntriesAreMarked() {
        let wide = HeaderValue.array(Array(repeating: .int(0), count: 5000))
        #expect(HeaderBounds.fault(in: ["x": wide])?.contains("4096 entries") == true)
        #expect(HeaderBounds.fault(in: ["x": .array(Array(repeating: .int(0), count: 4000))]) == nil)
    }

    func taskHeaders(task: String, job: String = "j1") -> Message {
        Message(body: [], headers: [
            "sr-version": .int(1), "sr-kind": .string("task"), "sr-job": .string(job), "sr-task": .string(task),
        ])
    }

    @Test(arguments: [String(repeating: "t", count: 161), "", "a b", "a\u{0}b", "é"])
    func taskIDsOutsideTheCharsetOrLengthAreRefused(_ id: String) {
        #expect { try TaskMessage(decoding: taskHeaders(task: id)) } throws: { error in
            (error as? WireError)?.message.contains("sr-task") == true
        }
    }

    @Test(arguments: [String(repeating: "j", count: 65), "a.b", "x/y"])
    func jobIDsOutsideTheCharsetOrLengthAreRefused(_ id: String) {
        #expect { try TaskMessage(decoding: taskHeaders(task: "t", job: id)) } throws: { error in
            (error as? WireError)?.message.contains("sr-job") == true
        }
    }

    func job(rows: Int, columns: Int = 16, vectors: Int) -> MatVecJob {
        MatVecJob(id: "big", mode: .layered, matrix: "inline", rows: rows, columns: columns, vectors: vectors,
                  partitionA: [2, -6], partitionX: [2, -6], layers: [[[0, 0]]], rowBlock: 1,
                  createdMs: 1_800_000_000_000, deadline: Deadline(epochMs: 1_800_000_001_000))
    }

    @Test func answersLargerThanABrokerMessageAreRefusedAtValidation() throws {
        // 8192 × 1100 results × 16 bytes = 144 179 200 bytes > 128 MiB.
        #expect { try job(rows: 8192, vectors: 1100).validate() } throws: { error in
            (error as? WireError)?.message.contains("would not fit a broker message") == true
        }
        // 8192 × 1000 × 16 = 131 072 000 bytes: fits under 134 217 728 − 65 536.
        try job(rows: 8192, vectors: 1000).validate()
        // x of 16 777 216 columns × 8 vectors at 4 bytes = 512 MiB.
        #expect { try job(rows: 1, columns: 1 << 24, vectors: 8).validate() } throws: { error in
            (error as? WireError)?.message.contains("task message") == true
        }
    }
}
