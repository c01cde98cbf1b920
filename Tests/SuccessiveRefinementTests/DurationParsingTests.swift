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
