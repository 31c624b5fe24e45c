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
        
        .target(name: "TensorCore"),
        .target(name: "CPUBackend", dependencies: ["TensorCore", "CPUKernels"]),
        // The op conformance table and the start-up self-check, shared by tests, `hprune selftest` and CUDA.
        .target(name: "BackendConformance", dependencies: ["TensorCore"]),
        // CUDA over dlopen'ed libcuda / NVRTC / nvJitLink / cuBLASLt: builds and reports "unavailable" without them.
        .target(name: "CUDABackend", dependencies: ["TensorCore", "BackendConformance"]),
        // Tensor files: safetensors, diffusers folders, GGUF (named apart from training checkpoints and gradient checkpointing).
        .target(name: "TensorFiles"),
        .target(name: "ModelSpec", dependencies: ["TensorFiles"]),
        .target(name: "Models", dependencies: ["TensorCore", "TensorFiles", "ModelSpec"]),
        // Compression's scorers and evaluation run models (Models does not depend on Compression).
        .target(name: "Compression", dependencies: ["Models", "ModelSpec", "TensorFiles", "TensorCore"]),
        .target(name: "Training", dependencies: ["Models", "ModelSpec", "Compression", "TensorCore", "TensorFiles"]),
        .target(name: "Classifier", swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "PNGSupport"),
        // `bench kernels` and `bench model`: the measurements (with their PyTorch references); the CLI prints them.
        .target(name: "Benchmarks", dependencies: ["CPUKernels", "CPUBackend", "TensorCore", "Models", "ModelSpec", "TensorFiles"]),

        // ── where the halves meet ────────────────────────────────────────────────────────
        .target(name: "ModelStore", dependencies: ["ArtifactStore", "TensorFiles", "ModelSpec", "TensorCore"]),
        .target(
            name: "Stages",
            dependencies: ["StageGraph", "Scheduler", "ArtifactStore", "RecipeLanguage", "YAMLSupport",
                           "TensorCore", "CPUBackend", "CUDABackend", "Models", "ModelStore", "Compression", "ModelSpec",
                           "TensorFiles", "Training", "Classifier", "PNGSupport"]
        ),
        .executableTarget(
            name: "hprune",
            dependencies: [
                "Stages", "Scheduler", "StageGraph", "ArtifactStore", "RecipeLanguage", "YAMLSupport",
                "TensorCore", "CPUBackend", "Models", "ModelStore", "Compression", "ModelSpec", "TensorFiles", "Benchmarks", "PNGSupport",
                "CUDABackend", "BackendConformance", "Training",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // ── tests ────────────────────────────────────────────────────────────────────────
        .target(name: "TestSupport", dependencies: ["YAMLSupport"], path: "Tests/TestSupport"),
        .testTarget(name: "YAMLSupportTests", dependencies: ["YAMLSupport", "TestSupport"]),
        .testTarget(name: "RecipeLanguageTests", dependencies: ["RecipeLanguage", "TestSupport"]),
        // Small real kinds (`write`, `consume-model`) so the pipeline tests need none of the numeric half.
        .target(name: "TestKinds", dependencies: ["Scheduler", "StageGraph", "ArtifactStore", "YAMLSupport"], path: "Tests/TestKinds"),
        .testTarget(name: "StageGraphTests", dependencies: ["StageGraph", "Scheduler", "RecipeLanguage", "TestSupport", "TestKinds"]),
        .testTarget(name: "ArtifactStoreTests", dependencies: ["ArtifactStore", "TestSupport"]),
        .testTarget(name: "SchedulerTests", dependencies: ["Scheduler", "StageGraph", "ArtifactStore", "RecipeLanguage", "TestSupport", "TestKinds"]),
        .testTarget(name: "CLITests", dependencies: ["hprune", "TestSupport", "TensorFiles", "ModelStore", "ArtifactStore", "PNGSupport"]),
        .testTarget(name: "CPUKernelsTests", dependencies: ["CPUKernels"]),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore", "CPUBackend", "BackendConformance", "TestSupport"]),
        .testTarget(name: "CUDABackendTests", dependencies: ["CUDABackend", "BackendConformance", "TensorCore", "CPUBackend"]),
        .testTarget(name: "QuantTests", dependencies: ["TensorCore"]),
        .testTarget(name: "ClassifierTests", dependencies: ["Classifier", "TensorFiles"]),
        .testTarget(name: "PNGSupportTests", dependencies: ["PNGSupport"]),
        .testTarget(name: "TensorFilesTests", dependencies: ["TensorFiles"]),
        .testTarget(name: "ModelSpecTests", dependencies: ["ModelSpec", "TensorFiles"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "ModelSpec", "TensorFiles", "TensorCore", "CPUBackend"]),
        .testTarget(name: "StagesTests", dependencies: ["Stages", "Scheduler", "StageGraph", "ArtifactStore", "ModelStore",
                                                     "Compression", "ModelSpec", "TensorFiles", "TestSupport", "YAMLSupport",
                                                     "Models", "TensorCore", "CPUBackend", "RecipeLanguage"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "ModelSpec", "TensorFiles", "TensorCore", "CPUBackend"]),
        .testTarget(name: "CompressionTests", dependencies: ["Compression", "ModelSpec", "TensorFiles", "TensorCore", "Models", "CPUBackend"]),
    ]
)
