// `Duration` as a command-line value ("1500ms", "1.5s", "2min"): one conformance for every
// executable, so each flag taking a duration parses it the same way.
import ArgumentParser

extension Duration: @retroactive ExpressibleByArgument {
    public init?(argument: String) {
        guard let d = DurationParsing.parse(argument) else { return nil }
        self = d
    }

    public static var defaultCompletionKind: CompletionKind { .default }

    /// For `@Option(parsing: .unconditional, transform: Duration.parsedArgument)`: says why a
    /// value is refused ("-5ms is not positive"), where a failable init could only say "invalid";
    /// `.unconditional` lets a value that starts with '-' reach it instead of being taken for a flag.
    public static func parsedArgument(_ text: String) throws -> Duration {
        do { return try DurationParsing.parseOrExplain(text) } catch { throw ValidationError(error.description) }
    }
}
