// swift-tools-version: 6.2
// Successive refinement for large-scale computation: a worker pool on RabbitMQ where every
// job yields a coarse result early and refines it layer by layer (arXiv 2402.07229).
import PackageDescription

/// Every target of ours: Swift 6 mode (the tools version implies it) and no warnings.
let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]

let package = Package(
    name: "successive-refinement",
    products: [
        .executable(name: "srproduce", targets: ["Producer"]),
        .executable(name: "srconsume", targets: ["Consumer"]),
        .executable(name: "sraggregate", targets: ["Aggregator"]),
        .executable(name: "srbench", targets: ["SRBench"]),
        .library(name: "SuccessiveRefinement", targets: ["SuccessiveRefinement"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // The C boundary: system-library modules, nested under Sources/Shared so that
        // Sources/ keeps exactly the four folders the user named.
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
        .target(
            name: "SuccessiveRefinement",
            dependencies: [
                "CSRBLAS", "CSRRabbitMQ", "CSRKernels", "CSRCrypto",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Shared",
            exclude: ["CBLAS", "CRabbitMQ", "CKernels", "CCrypto"],
            swiftSettings: strict),
        .executableTarget(
            name: "Producer",
            dependencies: [
                "SuccessiveRefinement",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/Producer",
            swiftSettings: strict),
        .executableTarget(
            name: "Consumer",
            dependencies: [
                "SuccessiveRefinement",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/Consumer",
            swiftSettings: strict),
        .executableTarget(
            name: "Aggregator",
            dependencies: [
                "SuccessiveRefinement",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/Aggregator",
            swiftSettings: strict),
        .executableTarget(
            name: "SRBench",
            dependencies: [
                "SuccessiveRefinement",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/SRBench",
            swiftSettings: strict),
        // Behavioural tests every Transport must pass; run by the unit tests on the in-memory
        // transport and by the integration tests on AMQP against a real RabbitMQ.
        .target(
            name: "TransportConformance",
            dependencies: ["SuccessiveRefinement"],
            path: "Tests/TransportConformance",
            swiftSettings: strict),
        .testTarget(
            name: "SuccessiveRefinementTests",
            dependencies: ["SuccessiveRefinement", "TransportConformance",
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            path: "Tests/SuccessiveRefinementTests",
            swiftSettings: strict),
        // Needs a real RabbitMQ: scripts/test.sh starts one and sets SR_AMQP_URL.
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["SuccessiveRefinement", "TransportConformance"],
            path: "Tests/IntegrationTests",
            swiftSettings: strict),
    ]
)
