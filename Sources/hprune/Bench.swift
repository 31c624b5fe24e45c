// `hprune bench model` and `hprune bench kernels`: the command-line front of the benchmarks in `Benchmarks`
// (ModelBench, KernelBench). `bench model`: forward latency and peak memory of an SD3-medium-width transformer (24 heads × 64,
// 6 layers, qk rms_norm, 64×64×16 latent → 1024 image tokens, 154 text tokens of width 4096) in f32 and bf16, or of
// the SD3.5-Large shape (--preset sd35-large: 38 layers × 38 heads × 64, 32×32 latent, 77 text tokens), with random
// weights or weights loaded from a diffusers folder (--weights), optionally against diffusers on PyTorch in the same
// invocation with the same thread count, the two alternating forward by forward so that a change in machine load
// hits both sides alike.
import ArgumentParser
import Benchmarks
import CPUBackend
import TensorFiles
import Foundation
import ModelSpec
import Models
import Stages
import TensorCore

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks.",
        subcommands: [BenchKernels.self, BenchModel.self]
    )
}

struct BenchModel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Forward latency of an SD3-medium-width transformer in f32 and bf16 (optionally vs diffusers).",
        discussion: """
            With --compare-torch, diffusers' SD3Transformer2DModel (same config, random weights, same thread count)
            runs in a second process and the two alternate: ours, diffusers, ours, diffusers, … after one warm-up
            each. Reported: the best and the median of each side, and speedup = diffusers' best / our best.
            Examples:
              hprune bench model
              hprune bench model --json --compare-torch /tmp/ref/bin/python --iterations 5
              hprune bench model --dtype f32 --layers 2
              hprune bench model --preset sd35-large --weights /models/sd35-large/transformer --dtype bf16
            --preset sd35-large is the 8B SD3.5-Large shape (38 layers, 38 heads × 64, joint width 4096, caption width
            2432, pos-embed 192) on a 32×32 latent with 77 text tokens. Its random weights take ~32 GB in f32, so for
            the real size pass --weights DIR: a diffusers transformer folder (config.json + safetensors) whose config
            replaces the preset's (the preset then sets only the latent and text sizes); diffusers loads the same
            folder with from_pretrained. Load times are reported as load_<dtype>_ms.
            """
    )

    @Flag(help: "Print the results as JSON.")
    var json = false

    @Option(name: .customLong("compare-torch"), help: ArgumentHelp("A Python with torch and diffusers to time the same model.", valueName: "python"))
    var compareTorch: String?

    @Option(help: "Timed forward passes per dtype and side (after one warm-up).")
    var iterations = 3

    @Option(help: "Model shape: sd3-medium-width (default) or sd35-large (the 8B SD3.5-Large shape).")
    var preset = "sd3-medium-width"

    @Option(help: ArgumentHelp("Load the transformer from this diffusers folder (config.json + safetensors) instead of random weights.",
                               valueName: "dir"), completion: .directory)
    var weights: String?

    @Option(help: "Number of transformer layers (default: the preset's; ignored with --weights).")
    var layers: Int?

    @Option(help: "Backend: cpu, cuda (diffusers then runs on the GPU too) or reference.")
    var backend = "cpu"

    @Option(help: ArgumentHelp("Compute dtypes to time (repeatable): f32, bf16. Default: both.", valueName: "dtype"))
    var dtype: [String] = []

    @Flag(help: "Repack Linear weights on every call instead of once (prepareForInference off), to measure what it saves.")
    var noPrepare = false

    func validate() throws {
        guard iterations >= 1 else { throw ValidationError("--iterations must be ≥ 1") }
        if let layers, layers < 1 { throw ValidationError("--layers must be ≥ 1") }
        guard BenchPreset(rawValue: preset) != nil else {
            throw ValidationError("--preset must be one of \(BenchPreset.allCases.map(\.rawValue).joined(separator: ", ")), got '\(preset)'")
        }
        if let weights {
            var dir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: weights, isDirectory: &dir), dir.boolValue,
                  FileManager.default.fileExists(atPath: weights + "/config.json") else {
                throw ValidationError("--weights \(weights): not a diffusers transformer folder (needs config.json and safetensors); "
                                      + "save one with diffusers' save_pretrained or `hprune export --format diffusers`")
            }
        }
        for d in dtype where ComputeDType(rawValue: d) == nil {
            throw ValidationError("--dtype must be f32 or bf16, got '\(d)'")
        }
    }

    func run() async throws {
        let be = try BackendRegistry.all.make(backend)
        let bench = ModelBench(iterations: iterations, preset: BenchPreset(rawValue: preset) ?? .sd3MediumWidth, weights: weights,
                               layers: layers, dtypes: dtype.isEmpty ? ComputeDType.allCases : dtype.compactMap(ComputeDType.init(rawValue:)),
                               noPrepare: noPrepare, compareTorch: compareTorch)
        let results: [String: Any]
        do {
            results = try bench.run(backend: be, log: { if !json { Terminal.err($0) } })
        } catch let e as BenchError {
            Terminal.err("error: \(e)")
            throw Exit.failed
        }
        if json {
            Terminal.printJSON(results)
        } else {
            for k in results.keys.sorted() where k != "config" { print("\(k): \(results[k]!)") }
        }
    }
}
