// swift-tools-version: 6.1
// hprune: HierarchicalPrune compression of MMDiT diffusion transformers, driven by YAML recipes.
//
// Two halves meet only in `Stages` and the `hprune` executable:
//   pipeline: CYAML → YAMLSupport → RecipeLanguage → StageGraph → ArtifactStore → Scheduler
//   numeric:  CPUKernels (C) → TensorCore → CPUBackend / CUDABackend → Models → Training → Compression
import PackageDescription

let package = Package(
    name: "hprune",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "hprune", targets: ["hprune"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // ── pipeline half ────────────────────────────────────────────────────────────────
        .systemLibrary(
            name: "CYAML",
            path: "Sources/CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"])]
        ),
        .target(name: "YAMLSupport", dependencies: ["CYAML"]),
        .target(name: "RecipeLanguage", dependencies: ["YAMLSupport"]),
        .target(name: "StageGraph", dependencies: ["RecipeLanguage", "YAMLSupport"]),
        .target(
            name: "ArtifactStore",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(name: "Scheduler", dependencies: ["StageGraph", "ArtifactStore", "RecipeLanguage", "YAMLSupport"]),

        // ── numeric half ─────────────────────────────────────────────────────────────────
        .target(
            name: "CPUKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=off"])],
            linkerSettings: [.linkedLibrary("m"), .linkedLibrary("pthread")]
        ),
        .target(name: "Benchmarks", dependencies: ["CPUKernels"]),
        .target(name: "TensorCore"),
        .target(name: "CPUBackend", dependencies: ["TensorCore", "CPUKernels"]),

        // ── where the halves meet ────────────────────────────────────────────────────────
        .target(
            name: "Stages",
            dependencies: ["StageGraph", "Scheduler", "ArtifactStore", "RecipeLanguage", "YAMLSupport",
                           "TensorCore", "CPUBackend"]
        ),
        .executableTarget(
            name: "hprune",
            dependencies: [
                "Stages", "Scheduler", "StageGraph", "ArtifactStore", "RecipeLanguage", "YAMLSupport",
                "TensorCore", "CPUBackend",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // ── tests ────────────────────────────────────────────────────────────────────────
        .target(name: "TestSupport", dependencies: ["YAMLSupport"], path: "Tests/TestSupport"),
        .testTarget(name: "YAMLSupportTests", dependencies: ["YAMLSupport", "TestSupport"]),
        .testTarget(name: "RecipeLanguageTests", dependencies: ["RecipeLanguage", "TestSupport"]),
        .testTarget(name: "StageGraphTests", dependencies: ["StageGraph", "Stages", "RecipeLanguage", "TestSupport"]),
        .testTarget(name: "ArtifactStoreTests", dependencies: ["ArtifactStore", "TestSupport"]),
        .testTarget(name: "SchedulerTests", dependencies: ["Scheduler", "Stages", "StageGraph", "ArtifactStore", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport"]),
        .testTarget(name: "CPUKernelsTests", dependencies: ["CPUKernels"]),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "CPUBackend", "TestSupport"]),
    ]
)
