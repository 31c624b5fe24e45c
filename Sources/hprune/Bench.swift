// `hprune bench model`: forward latency and peak memory of an SD3-medium-width transformer (24 heads × 64,
// 6 layers, qk rms_norm, 64×64×16 latent → 1024 image tokens, 154 text tokens of width 4096) in f32 and bf16,
// optionally against diffusers on PyTorch in the same invocation with the same thread count, the two alternating
// forward by forward so that a change in machine load hits both sides alike.
import ArgumentParser
import Benchmarks
import CPUBackend
import Checkpoint
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
            """
    )

    @Flag(help: "Print the results as JSON.")
    var json = false

    @Option(name: .customLong("compare-torch"), help: ArgumentHelp("A Python with torch and diffusers to time the same model.", valueName: "python"))
    var compareTorch: String?

    @Option(help: "Timed forward passes per dtype and side (after one warm-up).")
    var iterations = 3

    @Option(help: "Number of transformer layers.")
    var layers = 6

    @Option(help: "Backend: cpu, cuda (diffusers then runs on the GPU too) or reference.")
    var backend = "cpu"

    @Option(help: ArgumentHelp("Compute dtypes to time (repeatable): f32, bf16. Default: both.", valueName: "dtype"))
    var dtype: [String] = []

    @Flag(help: "Repack Linear weights on every call instead of once (prepareForInference off), to measure what it saves.")
    var noPrepare = false

    func validate() throws {
        guard iterations >= 1 else { throw ValidationError("--iterations must be ≥ 1") }
        guard layers >= 1 else { throw ValidationError("--layers must be ≥ 1") }
        for d in dtype where ComputeDType(rawValue: d) == nil {
            throw ValidationError("--dtype must be f32 or bf16, got '\(d)'")
        }
    }

    /// The benchmarked config (diffusers keys), shared with the PyTorch script.
    var configJSON: [String: Any] {
        ["_class_name": "SD3Transformer2DModel", "sample_size": 64, "patch_size": 2, "in_channels": 16, "num_layers": layers,
         "attention_head_dim": 64, "num_attention_heads": 24, "joint_attention_dim": 4096, "caption_projection_dim": 1536,
         "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 96, "qk_norm": "rms_norm",
         "dual_attention_layers": [Int]()]
    }

    func run() async throws {
        let be = try BackendRegistry.all.make(backend)
        let threads = CPUBackend.threadCount
        let cfgData = try JSONSerialization.data(withJSONObject: configJSON, options: [.sortedKeys])
        guard case .success(let v) = JSONValue.parse(cfgData), let obj = v.objectValue else { throw Exit.failed }
        let config = try ModelConfig.parse(obj, file: "<bench>")
        let dtypes = dtype.isEmpty ? ComputeDType.allCases : dtype.compactMap(ComputeDType.init(rawValue:))
        var results: [String: Any] = ["config": configJSON, "threads": threads, "backend": be.name, "iterations": iterations,
                                      "prepared_weights": !noPrepare,
                                      "load_average": Self.loadAverage()]
        let torch: PythonServer?
        do {
            torch = try compareTorch.map {
                try PythonServer(python: $0, script: modelTorchScript, name: "bench-model",
                                 arguments: [String(threads), String(decoding: cfgData, as: UTF8.self),
                                             be.name == "cuda" ? "cuda" : "cpu"])
            }
        } catch { Terminal.err("error: \(error)"); throw Exit.invalid }
        if let torch { results["torch_version"] = torch.greeting["torch"] as? String ?? "" }
        for dt in dtypes {
            let d = dt.rawValue
            let model = try randomTransformer(config, backend: be, compute: dt, seed: 0)
            if !noPrepare { try model.weights.prepareForInference(eagerly: true) }   // as `evaluate` runs models
            let inputs = TransformerInputs(
                hiddenStates: try be.randomNormal([1, 16, 64, 64], seed: 1, offset: 0),
                encoderHiddenStates: try be.randomNormal([1, 154, 4096], seed: 2, offset: 0),
                pooledProjections: try be.randomNormal([1, 2048], seed: 3, offset: 0), timestep: [500])
            let forward = { _ = try be.floats(try model.forward(inputs)) }   // floats(): wait for the result
            try forward()   // warm-up
            if let torch { _ = try reference { try torch.request(["op": "setup", "dtype": d]) } }
            var ours: [Double] = [], theirs: [Double] = []
            for _ in 0..<iterations {
                ours.append(try Self.milliseconds(forward))
                if let torch {
                    guard let s = try reference({ try torch.request(["op": "time"]) })["seconds"] as? Double else { throw Exit.failed }
                    theirs.append(s * 1000)
                }
            }
            results["hprune_\(d)_ms"] = ours.min() ?? 0
            results["hprune_\(d)_median_ms"] = median(ours)
            results["hprune_\(d)_all_ms"] = ours
            if !json { Terminal.err("hprune \(d): \(Self.list(ours))") }
            if let best = theirs.min(), let o = ours.min(), o > 0 {
                results["torch_\(d)_ms"] = best
                results["torch_\(d)_median_ms"] = median(theirs)
                results["torch_\(d)_all_ms"] = theirs
                results["speedup_\(d)"] = best / o
                results["speedup_\(d)_median"] = median(theirs) / median(ours)
                if !json { Terminal.err("diffusers \(d): \(Self.list(theirs))") }
            }
        }
        results["hprune_peak_rss_bytes"] = Self.peakRSS()
        if let torch {
            results["torch_peak_rss_bytes"] = try reference { try torch.request(["op": "quit"]) }["peak_rss_bytes"] ?? 0
        }
        results["load_average_end"] = Self.loadAverage()
        if json {
            Terminal.printJSON(results)
        } else {
            for k in results.keys.sorted() where k != "config" { print("\(k): \(results[k]!)") }
        }
    }

    /// A request to the diffusers process; its failure is printed and ends the command (exit 1).
    func reference(_ body: () throws -> [String: Any]) throws -> [String: Any] {
        do { return try body() } catch let e as BenchError {
            Terminal.err("error: \(e)")
            throw Exit.failed
        }
    }

    static func milliseconds(_ body: () throws -> Void) throws -> Double {
        let t0 = ContinuousClock.now
        try body()
        let d = ContinuousClock.now - t0
        return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) * 1e-15
    }

    static func list(_ xs: [Double]) -> String { xs.map { String(format: "%.0f ms", $0) }.joined(separator: ", ") }

    /// The 1-minute load average, or 0 where /proc/loadavg cannot be read.
    static func loadAverage() -> Double {
        guard let s = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return 0 }
        return Double(s.split(separator: " ").first ?? "0") ?? 0
    }

    /// Peak resident set size of this process (VmHWM), in bytes.
    static func peakRSS() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }
}

/// diffusers' SD3Transformer2DModel with the same config, random weights and input sizes, served one JSON line per
/// request (`PythonServer`) so that its forward passes can alternate with ours.
private let modelTorchScript = #"""
# hprune bench model: the diffusers reference. Reads one JSON request per line, answers one JSON line.
import json, resource, sys, time
import torch
from diffusers import SD3Transformer2DModel

torch.set_num_threads(int(sys.argv[1]))
cfg = json.loads(sys.argv[2]); cfg.pop("_class_name")
dev = sys.argv[3] if len(sys.argv) > 3 else "cpu"      # "cuda" when hprune times its CUDA backend
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
DT = {"f32": torch.float32, "bf16": torch.bfloat16}
m = args = None
with torch.inference_mode():
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        r = json.loads(line)
        try:
            if r["op"] == "setup":
                dt = DT[r["dtype"]]
                m = args = None
                torch.manual_seed(0)
                m = SD3Transformer2DModel(**cfg).to(dt).to(dev).eval()
                args = dict(hidden_states=torch.randn(1, 16, 64, 64, dtype=dt, device=dev),
                            encoder_hidden_states=torch.randn(1, 154, 4096, dtype=dt, device=dev),
                            pooled_projections=torch.randn(1, 2048, dtype=dt, device=dev),
                            timestep=torch.tensor([500.0], device=dev))
                m(**args); sync()  # warm-up
                print(json.dumps({"ok": True}), flush=True)
            elif r["op"] == "time":
                sync(); t = time.perf_counter(); m(**args); sync(); dt = time.perf_counter() - t
                print(json.dumps({"seconds": dt}), flush=True)
            elif r["op"] == "quit":
                print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)
                break
        except Exception as e:  # report, keep serving
            print(json.dumps({"error": repr(e)}), flush=True)
"""#
