// A JSON string literal written by hand where a JSON encoder would be too much (safetensors
// headers, log lines, --json output): one escaper, so every writer escapes the same way.

public enum JSONText {
    /// `s` as a JSON string literal (RFC 8259): quote, backslash and control characters escaped;
    /// everything else, '/' and non-ASCII included, as is.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
