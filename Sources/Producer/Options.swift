// Options shared by several srproduce commands (--broker and --store: SRCLISupport).
import ArgumentParser
import Foundation
import SRCLISupport
import SRCore
import SRFormats
import SRStore

/// Which images a command reads: `srproduce infer` and `srproduce model calibrate`.
struct ImageOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The images: an IDX images file (pixels scaled to [0, 1]), a CIFAR-10 .bin batch, an MNIST .csv, or a .npy array (N × input size, used as is).", valueName: "path"))
    var images: String

    @Option(help: ArgumentHelp("Labels when the images carry none: an IDX labels file or a .npy vector.", valueName: "path"))
    var labels: String?

    @Option(help: "Index of the first image to use.")
    var first: Int = 0

    @Option(help: "Number of images to use (default: all from --first on).")
    var count: Int?

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be ≥ 1") }
        guard first >= 0 else { throw ValidationError("--first must be ≥ 0") }
    }

    func read() throws -> ImageFile {
        try ImageFile.read(images, labelsPath: labels, first: first, count: count)
    }
}

struct PartitionOptions: ParsableArguments {
    @Option(name: .long, help: "Chunks per operand (m), with p_0 fitted to the data.")
    var chunks: Int = 3

    @Option(name: .long, help: "Magnitude bits per chunk (≤ 7 keeps int8 chunk planes).")
    var bits: Int = 6

    @Option(name: .customLong("partition-a"), help: ArgumentHelp(
        "Explicit partition of the matrix, e.g. 4,0,-3 (overrides --chunks/--bits).", valueName: "p0,p1,…"))
    var partitionA: String?

    @Option(name: .customLong("partition-x"), help: ArgumentHelp(
        "Explicit partition of the vector, e.g. 1,-3,-7.", valueName: "q0,q1,…"))
    var partitionX: String?

    @Option(help: "Layer schedule: significance (pairs with equal i+j per layer) or one-per-resolution.")
    var schedule: ScheduleKind = .significance

    enum ScheduleKind: String, ExpressibleByArgument, CaseIterable {
        case significance
        case onePerResolution = "one-per-resolution"
    }

    func validate() throws {
        guard (1...16).contains(chunks) else { throw ValidationError("--chunks must be in 1...16") }
        guard (1...31).contains(bits) else { throw ValidationError("--bits must be in 1...31") }
        if (partitionA == nil) != (partitionX == nil) {
            throw ValidationError("give both --partition-a and --partition-x, or neither")
        }
    }

    /// Partitions from the operands' largest magnitudes (fitted) or from the explicit flags.
    func partitions(maxA: Double, maxX: Double) throws -> (PartitionVector, PartitionVector, LayerSchedule) {
        let p: PartitionVector, q: PartitionVector
        if let partitionA, let partitionX {
            p = try PartitionVector(try Self.exponents(partitionA, "--partition-a"))
            q = try PartitionVector(try Self.exponents(partitionX, "--partition-x"))
        } else {
            p = try .fitted(maxMagnitude: maxA, chunks: chunks, bits: bits)
            q = try .fitted(maxMagnitude: maxX, chunks: chunks, bits: bits)
        }
        let s: LayerSchedule = switch schedule {
        case .significance: try .bySignificance(chunksA: p.chunkCount, chunksX: q.chunkCount)
        case .onePerResolution: try .onePairPerResolution(chunksA: p.chunkCount, chunksX: q.chunkCount)
        }
        return (p, q, s)
    }

    static func exponents(_ text: String, _ flag: String) throws -> [Int] {
        let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
            throw ValidationError("\(flag) must be comma-separated integers like 4,0,-3 (got '\(text)')")
        }
        return parts.map { $0! }
    }
}

/// A failure at run time (not a usage error): printed as "Error: …" with exit status 1, without
/// the usage text ArgumentParser adds to validation errors (exit 64).
struct RunFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
