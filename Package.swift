// swift-tools-version: 6.2
// Successive refinement for large-scale computation: a worker pool on RabbitMQ where every
// job yields a coarse result early and refines it layer by layer (arXiv 2402.07229).
//
// The library is split into targets so that the compiler keeps the layering: a target can only
// use what it declares here. docs/ARCHITECTURE.md draws the graph and lists the arrows that must
// never exist; scripts/check-architecture.sh (run by CI) fails when one appears.
import PackageDescription

/// Every target of ours: Swift 6 mode (the tools version implies it) and no warnings.
let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]

let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let serviceLifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
/// The swift-metrics API the roles count with; only executables bootstrap a backend.
let coreMetrics = Target.Dependency.product(name: "CoreMetrics", package: "swift-metrics")
/// The Prometheus backend: linked by SRCLISupport (the executables' edge) alone.
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")
let swiftProtobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")

/// A library target whose sources live in `Sources/Shared/<folder>`.
func library(_ name: String, folder: String, _ dependencies: [Target.Dependency]) -> Target {
    .target(name: name, dependencies: dependencies, path: "Sources/Shared/\(folder)", swiftSettings: strict)
}

let package = Package(
    name: "successive-refinement",
    products: [
        .executable(name: "srproduce", targets: ["Producer"]),
        .executable(name: "srconsume", targets: ["Consumer"]),
        .executable(name: "sraggregate", targets: ["Aggregator"]),
        .executable(name: "srbench", targets: ["SRBench"]),
        // For embedders and the fuzz package: one import for the whole library.
        .library(name: "SuccessiveRefinement", targets: ["SuccessiveRefinement"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Runtime for the committed onnx.pb.swift (scripts/generate-onnx-proto.sh); no plugin in the build.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // The C boundary: system-library modules, nested under Sources/Shared so that
        // Sources/ keeps exactly the four folders the user named. Each has one importer.
        .systemLibrary(
            name: "CSRBLAS", path: "Sources/Shared/CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CSRRabbitMQ", path: "Sources/Shared/CRabbitMQ", pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]),
        .systemLibrary(
            name: "CSRCrypto", path: "Sources/Shared/CCrypto", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),
        // Vectorised exact int8 kernels with runtime dispatch (AVX2 / AVX-512 / VNNI), in C
        // because Swift cannot pick instruction sets per function at run time.
        .target(
            name: "CSRKernels", path: "Sources/Shared/CKernels",
            cSettings: [.unsafeFlags(["-O3"])]),

        // Partitions, chunk planes, schedules, error bounds, Matrix/Tensor, exit rules: the
        // paper's mathematics as values. Depends on nothing.
        library("SRCore", folder: "Core", []),
        // The only importer of BLAS and the SIMD kernels.
        library("SRKernels", folder: "Kernels", ["SRCore", "CSRBLAS", "CSRKernels"]),
        // Mini-job codes (parity over Mod61) and coded chunk planes.
        library("SRCoding", folder: "Coding", ["SRCore"]),
        // .npy, IDX, CIFAR, MNIST CSV and safetensors readers/writers, each with its own error.
        library("SRFormats", folder: "Formats", ["SRCore"]),
        // Models, exact refinement and early exit (inference).
        library("SRNeural", folder: "Neural", ["SRCore", "SRFormats", "SRKernels", "SRStore"]),
        // Float forward pass and training: only the tools that train link it.
        library("SRTraining", folder: "Training", ["SRCore", "SRNeural", "SRKernels"]),
        // ONNX models into the project's model format (`srproduce model import`); the only
        // importer of SwiftProtobuf.
        library("SRONNX", folder: "ONNX", ["SRCore", "SRFormats", "SRNeural", swiftProtobuf]),
        // Content-addressed operands; the only importer of libcrypto. Knows no models (SRNeural
        // stores those through it), so the aggregator can verify against stored operands
        // without linking the kernels.
        library("SRStore", folder: "Store", ["SRCore", "SRFormats", "CSRCrypto"]),
        // The Transport protocol, messages, and the in-memory broker.
        library("SRTransport", folder: "Transport", ["SRCore"]),
        // The RabbitMQ transport; the only importer of rabbitmq-c.
        library("SRAMQP", folder: "AMQP", ["SRCore", "SRTransport", "CSRRabbitMQ", logging]),
        // Wire messages, job specs, topology: values only (no store, no neural, no AMQP).
        library("SRProtocol", folder: "Protocol", ["SRCore", "SRCoding", "SRTransport"]),
        // Pure per-job state machines: no logging, no lifecycle, no kernels, no AMQP.
        library("SRAggregation", folder: "Aggregation", ["SRCore", "SRCoding", "SRProtocol", "SRTransport"]),
        // The roles, one target each so that each executable links only what it runs; all three
        // know the Transport protocol, never AMQP.
        // What more than one role runs on: the kernel thread (`BlockingWork`), metric labels and
        // the queue-depth sampler (swift-metrics API only).
        library("SRRoleSupport", folder: "Roles/Support", ["SRTransport", coreMetrics]),
        // The consumer: task and inference computers, the plane cache, the kernel thread.
        library("SRWorker", folder: "Roles/Worker", [
            "SRCore", "SRCoding", "SRKernels", "SRNeural", "SRStore", "SRTransport", "SRProtocol",
            "SRRoleSupport", logging, serviceLifecycle, coreMetrics,
        ]),
        // The aggregator service: executes the job table's actions. Never links the kernels.
        library("SRAggregatorService", folder: "Roles/Aggregator", [
            "SRCore", "SRProtocol", "SRStore", "SRTransport", "SRAggregation", "SRRoleSupport", logging,
            serviceLifecycle, coreMetrics,
        ]),
        // What a producer runs: plans a job, publishes it, follows its outputs.
        library("SRSubmission", folder: "Roles/Submission", [
            "SRCore", "SRCoding", "SRNeural", "SRStore", "SRTransport", "SRProtocol",
        ]),
        // What the executables share at their edge: the connector that picks the transport,
        // environment defaults, option groups, the one `Duration: ExpressibleByArgument`.
        // The only library target allowed to depend on ArgumentParser: only executables link it
        // (it is not part of the SuccessiveRefinement product).
        // Also the metrics edge: `--metrics-port`, the Prometheus bootstrap and the /metrics responder.
        library("SRCLISupport", folder: "CLISupport", [
            "SRCore", "SRTransport", "SRAMQP", "SRStore", logging, argumentParser, coreMetrics, prometheus,
        ]),
        // The umbrella module behind the SuccessiveRefinement product: re-exports the libraries.
        library("SuccessiveRefinement", folder: "SuccessiveRefinement", [
            "SRCore", "SRKernels", "SRCoding", "SRFormats", "SRNeural", "SRTraining", "SRStore",
            "SRTransport", "SRAMQP", "SRProtocol", "SRAggregation", "SRWorker", "SRAggregatorService",
            "SRSubmission", "SRRoleSupport", "SRONNX",
        ]),

        .executableTarget(
            name: "Producer",
            dependencies: [
                "SRCLISupport", "SRCore", "SRFormats", "SRKernels", "SRNeural", "SRONNX", "SRProtocol", "SRSubmission", "SRWorker", "SRAggregatorService",
                "SRStore", "SRTraining", "SRTransport", "SRRoleSupport", logging, argumentParser,
            ],
            path: "Sources/Producer",
            swiftSettings: strict),
        .executableTarget(
            name: "Consumer",
            dependencies: [
                "SRCLISupport", "SRKernels", "SRRoleSupport", "SRWorker", "SRTransport", logging, serviceLifecycle, argumentParser,
            ],
            path: "Sources/Consumer",
            swiftSettings: strict),
        .executableTarget(
            name: "Aggregator",
            dependencies: ["SRCLISupport", "SRAggregatorService", "SRCore", "SRTransport", logging, serviceLifecycle, argumentParser],
            path: "Sources/Aggregator",
            swiftSettings: strict),
        .executableTarget(
            name: "SRBench",
            dependencies: [
                "SRAggregation", "SRCLISupport", "SRCore", "SRFormats", "SRKernels", "SRNeural", "SRProtocol",
                "SRTraining", "SRTransport", logging, argumentParser,
            ],
            path: "Benchmarks/SRBench",
            swiftSettings: strict),
        // Behavioural tests every Transport must pass; run by the unit tests on the in-memory
        // transport and by the integration tests on AMQP against a real RabbitMQ.
        .target(
            name: "TransportConformance",
            dependencies: ["SRCore", "SRNeural", "SRProtocol", "SRSubmission", "SRWorker", "SRAggregatorService", "SRStore", "SRTraining", "SRTransport", logging],
            path: "Tests/TransportConformance",
            swiftSettings: strict),
        .testTarget(
            name: "SuccessiveRefinementTests",
            dependencies: [
                "SRAggregation", "SRCLISupport", "SRCoding", "SRCore", "SRFormats", "SRKernels", "SRNeural",
                "SRProtocol", "SRSubmission", "SRWorker", "SRAggregatorService", "SRRoleSupport", "SRStore", "SRTraining",
                "SRTransport", "TransportConformance",
                logging, serviceLifecycle, coreMetrics,
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            path: "Tests/SuccessiveRefinementTests",
            swiftSettings: strict),
        // The AMQP connection's bookkeeping, driven by events: no broker, no thread, no clock.
        .testTarget(
            name: "AMQPTests",
            dependencies: ["SRAMQP", "SRTransport"],
            path: "Tests/AMQPTests",
            swiftSettings: strict),
        // The ONNX importer against models made and evaluated by onnx + numpy (Tests/Models/onnx-fixtures).
        .testTarget(
            name: "ONNXTests",
            dependencies: ["SRONNX", "SRCore", "SRFormats", "SRNeural", "SRTraining"],
            path: "Tests/ONNXTests",
            swiftSettings: strict),
        // Needs a real RabbitMQ: scripts/test.sh starts one and sets SR_AMQP_URL.
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "SRAMQP", "SRCore", "SRKernels", "SRProtocol", "SRSubmission", "SRWorker", "SRAggregatorService", "SRStore", "SRTransport",
                "SRCLISupport", "SRRoleSupport", "TransportConformance", logging, serviceLifecycle,
            ],
            path: "Tests/IntegrationTests",
            swiftSettings: strict),
    ]
)
