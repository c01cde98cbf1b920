// `srproduce deadline JOB`: fires a job's deadline now.
import ArgumentParser
import Foundation
import Logging
import SRCLISupport
import SRProtocol
import SRSubmission
import SRTransport

struct FireDeadline: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deadline",
        abstract: "Fire a job's deadline now: the aggregator emits its best result and closes it.",
        discussion: """
            Waits (--timeout) for the job's final answer and prints it. Exit status: 0 when the \
            final came with a result; 3 when it came with nothing computed (resolution 0); 1 for \
            a failed job; 4 when no final came in time — the aggregator does not know the job \
            (a wrong id, or a job already answered: a final is published once) or is not running.
            """)

    @Argument(help: "The job id (as printed by `srproduce matvec`).")
    var job: String

    @Option(parsing: .unconditional, help: ArgumentHelp("How long to wait for the job's final answer, e.g. 5s.", valueName: "duration"),
            transform: Duration.parsedArgument)
    var timeout: Duration = .seconds(5)

    @Flag(name: .customLong("no-wait"), help: "Fire and exit without waiting for the answer.")
    var noWait = false

    @OptionGroup var brokerOptions: BrokerOptions

    func validate() throws {
        guard MatVecJob.isValidID(job) else { throw ValidationError("'\(job)' is not a job id (1–64 letters, digits, '-' or '_')") }
    }

    func run() async throws {
        let transport = try await Connector.connect(brokerOptions.url, logger: Logger(label: "srproduce"))
        let final: OutputWatcher.FinalSummary?
        do {
            // Bound before firing: the answer cannot be missed.
            let watcher = noWait ? nil : try await OutputWatcher.watch([job], on: transport)
            try await JobSubmitter(transport: transport).fireDeadline(job: job)
            final = try await watcher?.nextFinal(within: timeout)
            await watcher?.subscription.cancel()
        } catch {
            await transport.close()
            throw error
        }
        await transport.close()
        guard !noWait else { return print("deadline fired for \(job)") }
        guard let final else {
            FileHandle.standardError.write(Data("""
                srproduce: deadline fired for \(job), but no final answer came within \(timeout): the aggregator does \
                not know this job (check the id; a job answered earlier is not answered again) or is not running

                """.utf8))
            throw ExitCode(4)
        }
        switch final.status {
        case .failed:
            throw RunFailure("job \(job) failed: \(final.reason ?? "no reason given")")
        case _ where final.resolution == 0:
            print("deadline fired for \(job): no result by the deadline (nothing computed; resolution 0/\(final.of))")
            throw ExitCode(3)
        default:
            print("deadline fired for \(job): final \(final.status.rawValue), resolution \(final.resolution)/\(final.of) "
                  + String(format: "at %.2f ms", final.elapsedMs))
        }
    }
}
