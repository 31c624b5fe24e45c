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
        .target(name: "YAMLSupport", dependencies: ["CYAML"], swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "RecipeLanguage", dependencies: ["YAMLSupport"], swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "StageGraph", dependencies: ["RecipeLanguage", "YAMLSupport"], swiftSettings: [.unsafeFlags(["-O"])]),
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
        // The op conformance table and the start-up self-check, shared by tests, `hprune selftest` and CUDA.
        .target(name: "BackendConformance", dependencies: ["TensorCore"]),
        // CUDA over dlopen'ed libcuda / NVRTC / nvJitLink / cuBLASLt: builds and reports "unavailable" without them.
        .target(name: "CUDABackend", dependencies: ["TensorCore", "BackendConformance"]),
        .target(name: "Checkpoint"),
        .target(name: "ModelSpec", dependencies: ["Checkpoint"]),
        .target(name: "Models", dependencies: ["TensorCore", "Checkpoint", "ModelSpec"]),
        .target(name: "Compression", dependencies: ["ModelSpec", "Checkpoint", "TensorCore"]),
        .target(name: "Training", dependencies: ["Models", "ModelSpec", "Compression", "TensorCore", "Checkpoint"]),
        .target(name: "Classifier", swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "PNGSupport"),

        // ── where the halves meet ────────────────────────────────────────────────────────
        .target(name: "ModelStore", dependencies: ["ArtifactStore", "Checkpoint", "ModelSpec"]),
        .target(
            name: "Stages",
            dependencies: ["StageGraph", "Scheduler", "ArtifactStore", "RecipeLanguage", "YAMLSupport",
                           "TensorCore", "CPUBackend", "CUDABackend", "Models", "ModelStore", "Compression", "ModelSpec",
                           "Checkpoint", "Training", "Classifier", "PNGSupport"]
        ),
        .executableTarget(
            name: "hprune",
            dependencies: [
                "Stages", "Scheduler", "StageGraph", "ArtifactStore", "RecipeLanguage", "YAMLSupport",
                "TensorCore", "CPUBackend", "Models", "ModelStore", "Compression", "ModelSpec", "Checkpoint", "Benchmarks", "PNGSupport",
                "CUDABackend", "BackendConformance", "Training",
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
        .testTarget(name: "CLITests", dependencies: ["hprune", "TestSupport", "Checkpoint", "ModelStore", "ArtifactStore", "PNGSupport"]),
        .testTarget(name: "CPUKernelsTests", dependencies: ["CPUKernels"]),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "CPUBackend", "BackendConformance", "TestSupport"]),
        .testTarget(name: "CUDABackendTests", dependencies: ["CUDABackend", "BackendConformance", "TensorCore", "CPUBackend"]),
        .testTarget(name: "QuantTests", dependencies: ["TensorCore"]),
        .testTarget(name: "ClassifierTests", dependencies: ["Classifier", "Checkpoint"]),
        .testTarget(name: "PNGSupportTests", dependencies: ["PNGSupport"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint"]),
        .testTarget(name: "ModelSpecTests", dependencies: ["ModelSpec", "Checkpoint"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "ModelSpec", "Checkpoint", "TensorCore", "CPUBackend"]),
        .testTarget(name: "StagesTests", dependencies: ["Stages", "Scheduler", "StageGraph", "ArtifactStore", "ModelStore",
                                                     "Compression", "ModelSpec", "Checkpoint", "TestSupport", "YAMLSupport",
                                                     "Models", "TensorCore", "CPUBackend"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "ModelSpec", "Checkpoint", "TensorCore", "CPUBackend"]),
        .testTarget(name: "CompressionTests", dependencies: ["Compression", "ModelSpec", "Checkpoint", "TensorCore"]),
    ]
)
