// How much header structure a role takes from the wire. Both transports apply the same bounds:
// the AMQP one while it takes rabbitmq-c's tables apart, the in-memory one on publish. A message
// over the bounds keeps only what was within them and gets `Header.malformed`, which every
// decoder refuses — so it is dead-lettered with that reason before anything reads it.

public enum HeaderBounds {
    /// The header a transport sets on a message whose header tables exceed these bounds.
    public static let malformedHeader = "sr-malformed"
    /// This system writes flat headers and the broker's `x-death` records nest 3 levels.
    public static let maxDepth = 8
    /// Table entries and array elements per message, in all.
    public static let maxEntries = 4096

    package static let tooDeep = "header tables nest deeper than \(maxDepth) levels"
    package static let tooMany = "header tables hold more than \(maxEntries) entries"

    /// What is wrong with `headers`, or nil when they are within bounds. Iterative (an explicit
    /// stack that stops at `maxDepth`), so no depth of nesting can exhaust the caller's stack.
    public static func fault(in headers: [String: HeaderValue]) -> String? {
        var pending: [(HeaderValue, depth: Int)] = headers.values.map { ($0, 0) }
        var entries = headers.count
        while let (value, depth) = pending.popLast() {
            guard entries <= maxEntries else { return tooMany }
            let children: [HeaderValue]
            switch value {
            case .array(let items): children = items
            case .table(let t): children = Array(t.values)
            default: continue
            }
            guard depth < maxDepth else { return tooDeep }
            entries += children.count
            pending += children.map { ($0, depth + 1) }
        }
        return entries <= maxEntries ? nil : tooMany
    }

    /// `message` as a role will see it: marked malformed when its headers are out of bounds.
    public static func checked(_ message: Message) -> Message {
        guard let fault = fault(in: message.headers) else { return message }
        var m = message
        m.headers[malformedHeader] = .string(fault)
        return m
    }
}
