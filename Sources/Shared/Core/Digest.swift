// A SHA-256 content digest as the wire and the store spell it: 64 lowercase hex digits. Here,
// not in the store, so that messages can check a digest without depending on the store.

public enum Digest {
    /// Whether `s` is 64 lowercase hex digits.
    public static func isValid(_ s: String) -> Bool {
        s.utf8.count == 64 && s.unicodeScalars.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }
}
