// srconsume: a stateless worker computing exact chunk products (the pipeline arrives with issue B).
import ArgumentParser
import SuccessiveRefinement

@main
struct Consume: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "srconsume",
        abstract: "Compute mini-jobs (exact chunk products) from the task queue.",
        discussion: "The AMQP worker arrives with issue B; this build holds the kernels it will run.")

    mutating func run() throws {
        print(Self.helpMessage())
    }
}
