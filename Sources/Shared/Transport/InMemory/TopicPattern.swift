// Topic-exchange matching with RabbitMQ's rules: dot-separated words, `*` matches exactly one
// word, `#` matches zero or more words.

struct TopicPattern: Sendable {
    private let words: [Substring]

    init(_ bindingKey: String) { words = Self.words(of: bindingKey) }

    /// The words of a key; RabbitMQ treats the empty key as zero words (so `#` matches it).
    static func words(of key: String) -> [Substring] {
        key.isEmpty ? [] : key.split(separator: ".", omittingEmptySubsequences: false)
    }

    /// Whether a routing key (split with `words(of:)`) matches. O(pattern words × key words):
    /// a table instead of backtracking, because `#.#.#…` backtracks exponentially.
    func matches(_ key: [Substring]) -> Bool {
        // suffix[k]: whether words[p...] matches key[k...], filled for p from the end down.
        var suffix = [Bool](repeating: false, count: key.count + 1)
        suffix[key.count] = true
        for word in words.reversed() {
            var current = [Bool](repeating: false, count: key.count + 1)
            if word == "#" {
                // Zero words (suffix[k]) or one more word then still in `#` (current[k + 1]).
                current[key.count] = suffix[key.count]
                for k in stride(from: key.count - 1, through: 0, by: -1) {
                    current[k] = suffix[k] || current[k + 1]
                }
            } else {
                for k in 0..<key.count where word == "*" || word == key[k] {
                    current[k] = suffix[k + 1]
                }
            }
            suffix = current
        }
        return suffix[0]
    }
}
