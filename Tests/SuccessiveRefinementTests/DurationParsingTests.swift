import Testing
@testable import SRCLISupport

@Suite struct DurationParsingTests {
    @Test func parsesUnits() {
        #expect(DurationParsing.parse("1500ms") == .milliseconds(1500))
        #expect(DurationParsing.parse("1.5s") == .milliseconds(1500))
        #expect(DurationParsing.parse("2m") == .seconds(120))
        #expect(DurationParsing.parse("250us") == .microseconds(250))
    }

    @Test func rejectsWhatItCannotReadUnambiguously() {
        for bad in ["1500", "", "ms", "-5ms", "0s", "abcms", "1e30s", "nanms"] {
            #expect(DurationParsing.parse(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct DurationUnitsAndReasonsTests {
    @Test func minutesAndHoursInEverySpelling() {
        #expect(DurationParsing.parse("2min") == .seconds(120))
        #expect(DurationParsing.parse("2m") == .seconds(120))
        #expect(DurationParsing.parse("1h") == .seconds(3600))
        #expect(DurationParsing.parse("0.5h") == .seconds(1800))
        #expect(DurationParsing.parse("250µs") == .microseconds(250))
    }

    @Test(arguments: [
        ("-5ms", "not positive"), ("0s", "not positive"), ("1500", "has no unit"),
        ("abc", "not a duration"), ("xms", "not a duration"), ("1e30s", "too long"), ("0.0001us", "shorter than a nanosecond"),
    ])
    func saysWhyAValueIsRefused(_ input: String, _ reason: String) {
        #expect(throws: DurationError.self) { try DurationParsing.parseOrExplain(input) }
        do {
            _ = try DurationParsing.parseOrExplain(input)
        } catch {
            #expect(error.description.contains(reason), "\(input): \(error.description)")
        }
    }
}
