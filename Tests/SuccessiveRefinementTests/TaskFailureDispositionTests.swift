import Testing
import SRProtocol
import SRStore
import SRTransport
@testable import SRWorker

@Suite struct TaskFailureDispositionTests {
    struct Unexpected: Error {}

    @Test func whatCannotSucceedIsDeadLetteredAtOnceTheRestGetsOneMoreTry() {
        // Never retried: the same input fails the same way.
        #expect(TaskFailureDisposition.of(WireError("bad pairs"), redelivered: false) == .deadLetter("bad pairs"))
        #expect(TaskFailureDisposition.of(StoreError(.corrupt, "digest mismatch"), redelivered: false) == .deadLetter("digest mismatch"))
        #expect(TaskFailureDisposition.of(StoreError(.invalidName, "bad name"), redelivered: false) == .deadLetter("bad name"))
        // One more try, then dead-lettered.
        for error: any Error in [StoreError(.notFound, "not in the store"), TransportError(.publishRejected, "nack"), Unexpected()] {
            #expect(TaskFailureDisposition.of(error, redelivered: false) == .retry, "\(error)")
            guard case .deadLetter = TaskFailureDisposition.of(error, redelivered: true) else {
                Issue.record("\(error) is retried a second time")
                continue
            }
        }
        #expect(TaskFailureDisposition.of(TransportError(.publishRejected, "nack"), redelivered: true)
                == .deadLetter("the broker refused its partial twice: nack"))
    }
}
