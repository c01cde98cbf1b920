// The one deadline value and the Duration conversions: what the user's `--deadline` becomes,
// what travels (the open record's JSON and the header keep the bare epoch milliseconds), and
// how late an answer is.
import Foundation
import Testing
@testable import SRCore
@testable import SRProtocol

@Suite struct DeadlineTests {
    @Test func aRelativeDeadlineBecomesAbsoluteAtLeastOneMillisecondLater() {
        let now: Int64 = 1_800_000_000_000
        #expect(Deadline(after: .milliseconds(500), from: now).epochMs == 1_800_000_000_500)
        #expect(Deadline(after: .seconds(90), from: now).epochMs == 1_800_000_090_000)
        // Sub-millisecond parts are dropped, never rounded up past what the user asked for…
        #expect(Deadline(after: .microseconds(2_999), from: now).epochMs == now + 2)
        // …and nothing is due before it could be read.
        #expect(Deadline(after: .zero, from: now).epochMs == now + 1)
        #expect(Deadline(after: .microseconds(10), from: now).epochMs == now + 1)
    }

    @Test func lateAndRemainingAreSignedMilliseconds() {
        let d = Deadline(epochMs: 10_000)
        #expect(d.remainingMs(at: 9_250) == 750)
        #expect(d.lateMs(at: 9_250) == -750)
        #expect(d.lateMs(at: 10_040) == 40)
        #expect(!d.hasPassed(at: 10_000) && d.hasPassed(at: 10_001))
        #expect(Deadline(epochMs: 1) < d)
    }

    @Test func theOpenRecordStillCarriesDeadlineMsAsABareNumber() throws {
        // An open record's job as a client of docs/WIRE.md writes it (pika example included).
        let json = """
            {"id":"j-1","mode":"layered","matrix":"inline","rows":2,"columns":2,"vectors":1,
             "partitionA":[1,-1],"partitionX":[1,-1],"layers":[[[0,0]]],"rowBlock":2,
             "createdMs":1800000000000,"deadlineMs":1800000001500}
            """
        let job = try JSONDecoder().decode(MatVecJob.self, from: Data(json.utf8))
        #expect(job.deadline == Deadline(epochMs: 1_800_000_001_500))
        #expect(job.relativeDeadlineMs == 1_500)
        let back = try JSONSerialization.jsonObject(with: JSONEncoder().encode(job)) as? [String: Any]
        #expect((back?["deadlineMs"] as? NSNumber)?.int64Value == 1_800_000_001_500)
        #expect(back?["deadline"] == nil)
    }

    @Test func durationConversionsTruncateExceptTTLsWhichRoundUp() {
        let d: Duration = .microseconds(1_500)
        #expect(d.wholeMilliseconds == 1)
        #expect(d.millisecondsRoundedUp == 2)
        #expect(d.milliseconds == 1.5)
        #expect(d.wholeMicroseconds == 1_500)
        #expect(Duration.seconds(3).millisecondsRoundedUp == 3_000)
        #expect(Duration.zero.millisecondsRoundedUp == 0)
        #expect(Duration.milliseconds(-5).millisecondsRoundedUp == 0)   // AMQP has no negative TTL
        #expect(Duration.milliseconds(2_250).seconds == 2.25)
    }
}
