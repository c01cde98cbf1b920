// The operating system's words for an I/O failure, shared by every file format and the model
// files that build on them.
import Foundation

public enum OSReason {
    /// "No such file or directory" rather than Foundation's generic wrapper text.
    public static func of(_ error: any Error) -> String {
        let ns = error as NSError
        // On Linux the underlying error is a Swift POSIXError, so bridge before matching.
        for candidate in [ns.userInfo[NSUnderlyingErrorKey] as? any Error, error].compactMap({ $0 }) {
            let bridged = candidate as NSError
            if bridged.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(bridged.code))) }
        }
        return ns.localizedDescription
    }
}
