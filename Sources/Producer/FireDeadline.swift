// `srproduce deadline JOB`: fires a job's deadline now.
import ArgumentParser
import Logging
import SRCLISupport
import SRProtocol
import SRRoles
import SRTransport

struct FireDeadline: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deadline",
        abstract: "Fire a job's deadline now: the aggregator emits its best result and closes it.")

    @Argument(help: "The job id (as printed by `srproduce matvec`).")
    var job: String

    @OptionGroup var brokerOptions: BrokerOptions

    func validate() throws {
        guard MatVecJob.isValidID(job) else { throw ValidationError("'\(job)' is not a job id (1–64 letters, digits, '-' or '_')") }
    }

    func run() async throws {
        let transport = try await Connector.connect(brokerOptions.url, logger: Logger(label: "srproduce"))
        do {
            try await JobSubmitter(transport: transport).fireDeadline(job: job)
        } catch {
            await transport.close()
            throw error
        }
        await transport.close()
        print("deadline fired for \(job)")
    }
}
