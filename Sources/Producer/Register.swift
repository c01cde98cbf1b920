// `srproduce register`: stores a matrix once; tasks then carry only its digest.
import ArgumentParser
import SRCLISupport
import SRFormats
import SRNeural
import SRStore

struct Register: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register a matrix or a network in the operand store and print its SHA-256 digest.",
        discussion: """
            The matrix (a float32 or float64 .npy file, C order, finite values) is stored once, \
            content-addressed, and NAME points to it. Jobs then name it (--matrix NAME) and \
            consumers load and cache its chunk planes; no task carries the matrix itself.
            """)

    @Argument(help: "Name for the matrix: letters, digits, '.', '_', '-'.")
    var name: String

    @Option(help: ArgumentHelp("The matrix as a .npy file, or - to read the .npy bytes from standard input (e.g. into a container: `docker compose run -T producer srproduce register A --matrix - < A.npy`).", valueName: "path|-"))
    var matrix: String?

    @Option(help: ArgumentHelp("A network: a model directory (model.json + model.safetensors) or a .safetensors file with the manifest in its metadata.", valueName: "dir|file"))
    var model: String?

    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        guard OperandStore.isValidName(name) else {
            throw ValidationError("'\(name)' is not a valid name: use 1–128 letters, digits, '.', '_' or '-', not starting with '.'")
        }
        guard (matrix == nil) != (model == nil) else { throw ValidationError("give exactly one of --matrix and --model") }
    }

    func run() throws {
        if let model {
            print(try storeOptions.operandStore.register(model: Model.load(from: model), name: name))
        } else if let matrix {
            print(try storeOptions.operandStore.register(OperandLoading.readMatrix(matrix), name: name))
        }
    }
}
