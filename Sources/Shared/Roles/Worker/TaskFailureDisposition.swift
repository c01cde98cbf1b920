// What a consumer does with a task whose computation threw, decided in one place: some
// failures cannot succeed on any retry (a malformed task, a corrupt operand) and go to sr.dead
// at once; the others (a store still mounting, a file just registered, a transport hiccup) get
// one more try. Nothing is retried twice, so nothing loops until it expires.
import SRProtocol
import SRStore
import SRTransport

enum TaskFailureDisposition: Equatable {
    /// Dead-letter now, with this reason.
    case deadLetter(String)
    /// Put the task back once (it comes back marked redelivered).
    case retry

    /// `redelivered`: the task already failed once.
    static func of(_ error: any Error, redelivered: Bool) -> TaskFailureDisposition {
        switch error {
        case let e as WireError:
            return .deadLetter(e.message)
        case let e as StoreError where e.code == .corrupt || e.code == .invalidName:
            return .deadLetter(e.message)
        case let e as StoreError:
            return redelivered ? .deadLetter(e.message) : .retry
        case let e as TransportError where e.code == .publishRejected:
            return redelivered ? .deadLetter("the broker refused its partial twice: \(e.message)") : .retry
        default:
            return redelivered ? .deadLetter("failed twice: \(error)") : .retry
        }
    }
}
