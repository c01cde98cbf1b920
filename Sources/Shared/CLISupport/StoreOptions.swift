// `--store`: the operand store directory shared by producers, consumers and the aggregator.
import ArgumentParser
import SRStore

public struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Operand store directory (default: $SR_STORE, else ./sr-store).", valueName: "dir"))
    public var store: String?

    public init() {}

    /// The store at the flag, else $SR_STORE, else ./sr-store.
    public var operandStore: OperandStore { RoleEnvironment.store(store) }
}
