// srbench: benchmarks that print tables of figures measured side by side in one run.
import ArgumentParser

@main
struct SRBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "srbench",
        abstract: "Measure the layered-resolution kernels against one-shot BLAS products.",
        discussion: "Build in release mode: swift run -c release srbench kernels. Results go in docs/BENCHMARKS.md.",
        subcommands: [KernelBenchmark.self, EarlyExitReport.self, HopLatency.self, VerificationCost.self,
                      EmbeddedInference.self, ExactInference.self])
}
