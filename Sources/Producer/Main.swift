// srproduce: the front door of the worker pool — register operands, submit jobs, follow their
// refinements, fire deadlines, stream load, and run the embedded demo.
import ArgumentParser

@main
struct Produce: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "srproduce",
        abstract: "Submit successive-refinement jobs and follow their refinements.",
        discussion: """
            Every job yields a coarse result early and refines it layer by layer; when its \
            deadline fires, the aggregator emits the best result so far with a rigorous error \
            bound. The broker is SR_AMQP_URL (or --broker); operands live in SR_STORE (or --store).
            Start with `srproduce demo`, which needs no broker.
            """,
        subcommands: [Demo.self, Register.self, MatVec.self, Infer.self, InferStream.self, FireDeadline.self, Stream.self, Top.self, ModelCommand.self])
}
