// `Duration` as a command-line value ("1500ms", "1.5s", "2m"): one conformance for every
// executable, so each flag taking a duration parses it the same way.
import ArgumentParser

extension Duration: @retroactive ExpressibleByArgument {
    public init?(argument: String) {
        guard let d = DurationParsing.parse(argument) else { return nil }
        self = d
    }

    public static var defaultCompletionKind: CompletionKind { .default }
}
