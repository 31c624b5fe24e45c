// `bench model`'s measurement: forward latency and peak memory of an SD3-family transformer (a preset shape with
// random weights, or a diffusers folder) in f32 and/or bf16 on a backend, optionally against diffusers on
// PyTorch in the same run with the same thread count, the two alternating forward by forward so that a change in
// machine load hits both sides alike. The CLI (`Sources/hprune/Bench.swift`) parses the options and prints.
import CPUBackend
import TensorFiles
import Foundation
import ModelSpec
import Models
import TensorCore

public struct ModelBench {
    public var iterations: Int
    public var preset: BenchPreset
    /// A diffusers transformer folder (config.json + safetensors); nil: random weights of the preset's shape.
    public var weights: String?
    public var layers: Int?
    public var dtypes: [ComputeDType]
    /// Repack Linear weights on every call instead of once (prepareForInference off).
    public var noPrepare: Bool
    /// A Python with torch and diffusers, to time the same model.
    public var compareTorch: String?

    public init(iterations: Int, preset: BenchPreset, weights: String?, layers: Int?, dtypes: [ComputeDType],
                noPrepare: Bool, compareTorch: String?) {
        self.iterations = iterations
        self.preset = preset
        self.weights = weights
        self.layers = layers
        self.dtypes = dtypes
        self.noPrepare = noPrepare
        self.compareTorch = compareTorch
    }

    /// The benchmarked config (diffusers keys), shared with the PyTorch script: the preset's, or the folder's.
    public func configJSON() throws -> [String: Any] {
        guard let weights else { return preset.config(layers: layers) }
        let path = weights + "/config.json"
        guard let obj = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] else {
            throw BenchError.kernel("\(path): not a JSON object; it must be a diffusers transformer config.json")
        }
        return obj
    }

    /// Runs the benchmark on `be`; `log` gets a line per timed side. Returns the results (JSON-ready).
    public func run(backend be: any Backend, log: (String) -> Void) throws -> [String: Any] {
        let threads = CPUBackend.threadCount
        let cfg = try configJSON()
        let cfgData = try JSONSerialization.data(withJSONObject: cfg, options: [.sortedKeys])
        guard case .success(let v) = JSONValue.parse(cfgData), let obj = v.objectValue else { throw BenchError.kernel("config is not JSON") }
        let config = try ModelConfig.parse(obj, file: weights.map { $0 + "/config.json" } ?? "<bench>")
        let p = preset
        let inC = cfg["in_channels"] as? Int ?? 16, joint = cfg["joint_attention_dim"] as? Int ?? 4096
        let pooled = cfg["pooled_projection_dim"] as? Int ?? 2048
        let latent = weights == nil ? p.latent : min(p.latent, (cfg["sample_size"] as? Int ?? p.latent))
        var results: [String: Any] = ["config": cfg, "threads": threads, "backend": be.name, "iterations": iterations,
                                      "prepared_weights": !noPrepare, "preset": p.rawValue, "weights": weights ?? "random",
                                      "latent": latent, "text_tokens": p.textTokens,
                                      "cpu_kernels": CPUKernelReport.current().selected,
                                      "load_average": Self.loadAverage()]
        let torch = try compareTorch.map {
            try PythonServer(python: $0, script: modelTorchScript, name: "bench-model",
                             arguments: [String(threads), String(decoding: cfgData, as: UTF8.self), weights ?? "",
                                         String(latent), String(p.textTokens), be.name == "cuda" ? "cuda" : "cpu"])
        }
        if let torch { results["torch_version"] = torch.greeting["torch"] as? String ?? "" }
        for dt in dtypes {
            let d = dt.rawValue
            var model: (any DiffusionTransformer)?
            let loadMs = try Self.milliseconds {
                model = try weights.map { try loadTransformer(path: $0, backend: be, compute: dt) }
                    ?? randomTransformer(config, backend: be, compute: dt, seed: 0)
                if !noPrepare { try model!.weights.prepareForInference(eagerly: true) }   // as `evaluate` runs models
            }
            guard let model else { throw BenchError.kernel("no model") }
            results["hprune_load_\(d)_ms"] = loadMs
            let inputs = TransformerInputs(
                hiddenStates: try be.randomNormal([1, inC, latent, latent], seed: 1, offset: 0),
                encoderHiddenStates: try be.randomNormal([1, p.textTokens, joint], seed: 2, offset: 0),
                pooledProjections: try be.randomNormal([1, pooled], seed: 3, offset: 0), timestep: [500])
            let forward = { _ = try be.floats(try model.forward(inputs)) }   // floats(): wait for the result
            try forward()   // warm-up
            if let torch {
                let r = try torch.request(["op": "setup", "dtype": d])
                if let l = r["load_seconds"] as? Double { results["torch_load_\(d)_ms"] = l * 1000 }
            }
            var ours: [Double] = [], theirs: [Double] = []
            for _ in 0..<iterations {
                ours.append(try Self.milliseconds(forward))
                if let torch {
                    guard let s = try torch.request(["op": "time"])["seconds"] as? Double else { throw BenchError.python("no timing in the reply") }
                    theirs.append(s * 1000)
                }
            }
            results["hprune_\(d)_ms"] = ours.min() ?? 0
            results["hprune_\(d)_median_ms"] = median(ours)
            results["hprune_\(d)_all_ms"] = ours
            log("hprune \(d): \(Self.list(ours))")
            if let best = theirs.min(), let o = ours.min(), o > 0 {
                results["torch_\(d)_ms"] = best
                results["torch_\(d)_median_ms"] = median(theirs)
                results["torch_\(d)_all_ms"] = theirs
                results["speedup_\(d)"] = best / o
                results["speedup_\(d)_median"] = median(theirs) / median(ours)
                log("diffusers \(d): \(Self.list(theirs))")
            }
        }
        results["hprune_peak_rss_bytes"] = Self.peakRSS()
        if let torch {
            results["torch_peak_rss_bytes"] = try torch.request(["op": "quit"])["peak_rss_bytes"] ?? 0
        }
        results["load_average_end"] = Self.loadAverage()
        return results
    }

    static func milliseconds(_ body: () throws -> Void) throws -> Double {
        let t0 = ContinuousClock.now
        try body()
        let d = ContinuousClock.now - t0
        return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) * 1e-15
    }

    static func list(_ xs: [Double]) -> String { xs.map { String(format: "%.0f ms", $0) }.joined(separator: ", ") }

    /// The 1-minute load average, or 0 where /proc/loadavg cannot be read.
    public static func loadAverage() -> Double {
        guard let s = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return 0 }
        return Double(s.split(separator: " ").first ?? "0") ?? 0
    }

    /// Peak resident set size of this process (VmHWM), in bytes.
    public static func peakRSS() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }
}

/// The model shapes `bench model` knows (diffusers config keys) and their input sizes.
public enum BenchPreset: String, CaseIterable, Sendable {
    case sd3MediumWidth = "sd3-medium-width"
    case sd35Large = "sd35-large"

    /// Latent height = width, and text tokens.
    public var latent: Int { self == .sd3MediumWidth ? 64 : 32 }
    public var textTokens: Int { self == .sd3MediumWidth ? 154 : 77 }

    public func config(layers: Int?) -> [String: Any] {
        switch self {
        case .sd3MediumWidth:
            return ["_class_name": "SD3Transformer2DModel", "sample_size": 64, "patch_size": 2, "in_channels": 16,
                    "num_layers": layers ?? 6, "attention_head_dim": 64, "num_attention_heads": 24, "joint_attention_dim": 4096,
                    "caption_projection_dim": 1536, "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 96,
                    "qk_norm": "rms_norm", "dual_attention_layers": [Int]()]
        case .sd35Large:   // stabilityai/stable-diffusion-3.5-large transformer/config.json
            return ["_class_name": "SD3Transformer2DModel", "sample_size": 128, "patch_size": 2, "in_channels": 16,
                    "num_layers": layers ?? 38, "attention_head_dim": 64, "num_attention_heads": 38, "joint_attention_dim": 4096,
                    "caption_projection_dim": 2432, "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 192,
                    "qk_norm": "rms_norm", "dual_attention_layers": [Int]()]
        }
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
cfg = json.loads(sys.argv[2]); cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and not k.startswith("hprune")}
weights, latent, tokens = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
dev = sys.argv[6] if len(sys.argv) > 6 else "cpu"      # "cuda" when hprune times its CUDA backend
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
                t = time.perf_counter()
                if weights:
                    # torch_dtype keeps the load at the target size; .to(dt) also casts modules diffusers keeps in f32
                    m = SD3Transformer2DModel.from_pretrained(weights, torch_dtype=dt).to(dt).to(dev).eval()
                else:
                    m = SD3Transformer2DModel(**cfg).to(dt).to(dev).eval()
                load = time.perf_counter() - t
                args = dict(hidden_states=torch.randn(1, cfg["in_channels"], latent, latent, dtype=dt, device=dev),
                            encoder_hidden_states=torch.randn(1, tokens, cfg["joint_attention_dim"], dtype=dt, device=dev),
                            pooled_projections=torch.randn(1, cfg["pooled_projection_dim"], dtype=dt, device=dev),
                            timestep=torch.tensor([500.0], device=dev))
                m(**args); sync()  # warm-up
                print(json.dumps({"ok": True, "load_seconds": load}), flush=True)
            elif r["op"] == "time":
                sync(); t = time.perf_counter(); m(**args); sync(); dt = time.perf_counter() - t
                print(json.dumps({"seconds": dt}), flush=True)
            elif r["op"] == "quit":
                print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)
                break
        except Exception as e:  # report, keep serving
            print(json.dumps({"error": repr(e)}), flush=True)
"""#
