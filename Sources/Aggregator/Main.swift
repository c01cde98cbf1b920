// sraggregate: refines each job's result layer by layer (the pipeline arrives with issue B).
import ArgumentParser
import SuccessiveRefinement

@main
struct Aggregate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sraggregate",
        abstract: "Accumulate partial products into resolutions and emit results at deadlines.",
        discussion: "The AMQP service arrives with issue B; this build holds the accumulator it will run.")

    mutating func run() throws {
        print(Self.helpMessage())
    }
}
