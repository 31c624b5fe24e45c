// `hprune bench model`: forward latency and peak memory of an SD3-medium-width transformer (24 heads × 64,
// 6 layers, qk rms_norm, 64×64×16 latent → 1024 image tokens, 154 text tokens of width 4096) in f32 and bf16,
// optionally against diffusers on PyTorch run in the same invocation with the same thread count.
import ArgumentParser
import CPUBackend
import Checkpoint
import Foundation
import ModelSpec
import Models
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
            Examples:
              hprune bench model
              hprune bench model --json --compare-torch /tmp/ref/bin/python
            """
    )

    @Flag(help: "Print the results as JSON.")
    var json = false

    @Option(name: .customLong("compare-torch"), help: ArgumentHelp("A Python with torch and diffusers to time the same model.", valueName: "python"))
    var compareTorch: String?

    @Option(help: "Timed forward passes per dtype (after one warm-up).")
    var iterations = 2

    @Option(help: "Number of transformer layers.")
    var layers = 6

    @Option(help: "Backend: cpu or reference.")
    var backend = "cpu"

    func validate() throws {
        guard iterations >= 1 else { throw ValidationError("--iterations must be ≥ 1") }
        guard layers >= 1 else { throw ValidationError("--layers must be ≥ 1") }
    }

    /// The benchmarked config (diffusers keys), shared with the PyTorch script.
    var configJSON: [String: Any] {
        ["_class_name": "SD3Transformer2DModel", "sample_size": 64, "patch_size": 2, "in_channels": 16, "num_layers": layers,
         "attention_head_dim": 64, "num_attention_heads": 24, "joint_attention_dim": 4096, "caption_projection_dim": 1536,
         "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 96, "qk_norm": "rms_norm",
         "dual_attention_layers": [Int]()]
    }

    func run() async throws {
        let be = try BackendRegistry.standard.make(backend)
        let threads = CPUBackend.threadCount
        let cfgData = try JSONSerialization.data(withJSONObject: configJSON, options: [.sortedKeys])
        guard case .success(let v) = JSONValue.parse(cfgData), let obj = v.objectValue else { throw Exit.failed }
        let config = try ModelConfig.parse(obj, file: "<bench>")
        var results: [String: Any] = ["config": configJSON, "threads": threads, "backend": be.name, "iterations": iterations]
        for dtype in ComputeDType.allCases {
            let model = try randomTransformer(config, backend: be, compute: dtype, seed: 0)
            let inputs = TransformerInputs(
                hiddenStates: try be.randomNormal([1, 16, 64, 64], seed: 1, offset: 0),
                encoderHiddenStates: try be.randomNormal([1, 154, 4096], seed: 2, offset: 0),
                pooledProjections: try be.randomNormal([1, 2048], seed: 3, offset: 0), timestep: [500])
            _ = try model.forward(inputs)
            var times: [Double] = []
            for _ in 0..<iterations {
                let t0 = ContinuousClock.now
                _ = try model.forward(inputs)
                let d = ContinuousClock.now - t0
                times.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) * 1e-15)
            }
            results["hprune_\(dtype.rawValue)_ms"] = times.min() ?? 0
            if !json { Terminal.err("hprune \(dtype.rawValue): \(times.map { String(format: "%.0f ms", $0) }.joined(separator: ", "))") }
        }
        results["hprune_peak_rss_bytes"] = peakRSS()
        if let python = compareTorch {
            let torch = try runTorch(python: python, config: cfgData, threads: threads)
            for (k, v) in torch { results["torch_" + k] = v }
            for d in ["f32", "bf16"] {
                if let o = results["hprune_\(d)_ms"] as? Double, let t = torch["\(d)_ms"] as? Double, o > 0 {
                    results["speedup_\(d)"] = t / o
                }
            }
        }
        if json {
            Terminal.printJSON(results)
        } else {
            for k in results.keys.sorted() where k != "config" { print("\(k): \(results[k]!)") }
        }
    }

    /// Peak resident set size of this process (VmHWM), in bytes.
    func peakRSS() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }

    /// Times diffusers' SD3Transformer2DModel with the same config, random weights and input sizes.
    func runTorch(python: String, config: Data, threads: Int) throws -> [String: Any] {
        let script = """
            import json, sys, time, resource, torch
            from diffusers import SD3Transformer2DModel
            torch.set_num_threads(\(threads))
            cfg = json.loads(sys.argv[1]); cfg.pop("_class_name")
            out = {}
            for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
                torch.manual_seed(0)
                m = SD3Transformer2DModel(**cfg).to(dt).eval()
                x = torch.randn(1, 16, 64, 64, dtype=dt); c = torch.randn(1, 154, 4096, dtype=dt)
                p = torch.randn(1, 2048, dtype=dt); t = torch.tensor([500.0])
                with torch.inference_mode():
                    m(hidden_states=x, encoder_hidden_states=c, pooled_projections=p, timestep=t)
                    best = None
                    for _ in range(\(iterations)):
                        t0 = time.perf_counter()
                        m(hidden_states=x, encoder_hidden_states=c, pooled_projections=p, timestep=t)
                        d = (time.perf_counter() - t0) * 1000
                        best = d if best is None else min(best, d)
                out[name + "_ms"] = best
                del m
            out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            out["torch"] = torch.__version__
            print(json.dumps(out))
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script, String(decoding: config, as: UTF8.self)]
        let pipe = Pipe(), errPipe = Pipe()
        p.standardOutput = pipe
        p.standardError = errPipe
        do { try p.run() } catch {
            Terminal.err("error: cannot run \(python): \(error)")
            throw Exit.invalid
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        let errData = errPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0,
              let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            Terminal.err("error: the PyTorch benchmark failed (\(python)):\n" + String(decoding: errData, as: UTF8.self).suffix(2000))
            throw Exit.failed
        }
        return obj
    }
}
