// srproduce: the front door of the worker pool (validates jobs, publishes mini-jobs by layer).
import ArgumentParser
import SuccessiveRefinement

@main
struct Produce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "srproduce",
        abstract: "Submit successive-refinement jobs to the worker pool.",
        discussion: """
            Every job yields a coarse result early and refines it layer by layer; at its \
            deadline the best result so far is emitted. See README.md.
            """,
        subcommands: [Demo.self])
}
