// swift-tools-version: 6.2
// libFuzzer harness for every wire decoder and file reader of SuccessiveRefinement. A package of
// its own so that the root package's `swift build`/`swift test` never see sanitizer flags;
// scripts/fuzz.sh builds it with -sanitize=fuzzer,address (see README.md).
import PackageDescription

let package = Package(
    name: "successive-refinement-fuzz",
    products: [.executable(name: "srfuzz", targets: ["SRFuzz"])],
    dependencies: [
        .package(name: "successive-refinement", path: ".."),
    ],
    targets: [
        // One binary for all targets (SRFUZZ_TARGET picks one): linking the library with ASan
        // takes most of the build, so one link instead of nineteen.
        .executableTarget(
            name: "SRFuzz",
            dependencies: ["CFuzzDriver", .product(name: "SuccessiveRefinement", package: "successive-refinement")],
            path: "Sources/SRFuzz",
            swiftSettings: [.treatAllWarnings(as: .error)]),
        // Declares LLVMFuzzerRunDriver for Swift (see its header).
        .target(name: "CFuzzDriver", path: "Sources/CFuzzDriver"),
    ]
)
