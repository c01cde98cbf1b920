// srproduce: the front door of the worker pool (validates jobs, publishes mini-jobs by layer).
import ArgumentParser
import SuccessiveRefinement

@main
struct Produce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "srproduce",
        abstract: "Submit successive-refinement jobs to the worker pool.",
        discussion: """
            The distributed pipeline (register, matvec, deadline, stream, demo) arrives with \
            issue B. This build contains the exact layered-resolution core; see README.md.
            """)

    mutating func run() throws {
        print(Self.helpMessage())
    }
}
