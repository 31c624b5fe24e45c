// `hprune bench kernels --backend cuda`: the issue's GPU cases through the CUDA backend — bf16 GEMM 4096³ (vs
// torch.matmul), bf16 attention B=1 H=24 L=4096 D=64 (vs SDPA), W4A16 nf4 GEMV M=1 K=N=4096 (vs a bf16 matmul of
// that shape) — with PyTorch on the same GPU in the same run, alternating repetition by repetition.
import Benchmarks
import BackendConformance
import CUDABackend
import Foundation
import TensorCore

enum CUDAKernelBench {
    /// One case: our median seconds, PyTorch's, and the ratio goal from issue 14.
    struct Case {
        var name: String, dtype: String, shape: String, flops: Double
        var goal: String
        var ours: () throws -> Void
        var torchRequest: [String: Any]
    }

    static func run(python: String?, repetitions: Int, filter: String?, log: ((String) -> Void)?) throws -> [[String: Any]] {
        let opened: CUDARuntime.Opened
        switch CUDARuntime.open() {
        case .success(let o): opened = o
        case .failure(let e): throw RegistryError.unavailable("cuda", reason: CUDARuntime.reason(e))
        }
        let be = opened.backend
        let torch = try python.map { try PythonServer(python: $0, script: torchScript, name: "bench-kernels-cuda", arguments: []) }
        var r = Inputs(7)
        let n = 4096
        let a16 = try be.cast(try be.tensor(r.uniform(n * n), shape: [n, n]), to: .bf16)
        let w16 = try be.cast(try be.tensor(r.uniform(n * n), shape: [n, n]), to: .bf16)
        let (h, l, d) = (24, 4096, 64)
        let q = try be.cast(try be.randomNormal([1, h, l, d], seed: 1, offset: 0), to: .bf16)
        let k = try be.cast(try be.randomNormal([1, h, l, d], seed: 2, offset: 0), to: .bf16)
        let v = try be.cast(try be.randomNormal([1, h, l, d], seed: 3, offset: 0), to: .bf16)
        let x1 = try be.cast(try be.tensor(r.uniform(n), shape: [1, n]), to: .bf16)
        let wq = try packedWeight(be, n: n, k: n, blockSize: 64, seed: 11)
        let cases = [
            Case(name: "gemm", dtype: "bf16", shape: "\(n)x\(n)x\(n)", flops: 2 * pow(Double(n), 3), goal: "ratio ≥ 0.95",
                 ours: { _ = try be.matmul(a16, w16, transposeA: false, transposeB: true, bias: nil, activation: .none) },
                 torchRequest: ["op": "gemm", "n": n]),
            Case(name: "attention", dtype: "bf16", shape: "B=1,H=\(h),L=\(l),D=\(d)", flops: 4 * Double(h * l * l * d),
                 goal: "ratio ≥ 0.8 (SDPA)", ours: { _ = try be.attention(q, k, v, scale: 0.125) },
                 torchRequest: ["op": "attention", "h": h, "l": l, "d": d]),
            Case(name: "gemv_w4a16", dtype: "nf4", shape: "1x\(n)x\(n)", flops: 2 * Double(n * n),
                 goal: "ratio ≥ 2.5 (vs a bf16 matmul)", ours: { _ = try be.matmulW4A16(x1, wq, bias: nil, activation: .none) },
                 torchRequest: ["op": "gemv_bf16", "n": n]),
        ].filter { c in filter.map { f in c.name.contains(f) || c.shape.contains(f) || c.dtype.contains(f) } ?? true }
        var out: [[String: Any]] = []
        for c in cases {
            for _ in 0..<2 { try c.ours(); try be.synchronize() }
            if let torch { _ = try torch.request(c.torchRequest.merging(["warmup": true]) { $1 }) }
            var ours: [Double] = [], theirs: [Double] = []
            for _ in 0..<repetitions {
                let t0 = ContinuousClock.now
                try c.ours()
                try be.synchronize()
                let dt = ContinuousClock.now - t0
                ours.append(Double(dt.components.seconds) + Double(dt.components.attoseconds) * 1e-18)
                if let torch, let s = try torch.request(c.torchRequest)["seconds"] as? Double { theirs.append(s) }
            }
            var rec: [String: Any] = ["name": c.name, "dtype": c.dtype, "shape": c.shape, "backend": "cuda",
                                      "device": opened.backend.deviceName, "seconds": median(ours),
                                      "gflops": c.flops / median(ours) / 1e9, "goal": c.goal]
            if !theirs.isEmpty {
                rec["reference_seconds"] = median(theirs)
                rec["reference_gflops"] = c.flops / median(theirs) / 1e9
                rec["ratio"] = median(theirs) / median(ours)
            }
            log?("\(c.name) \(c.dtype) \(c.shape): \(String(format: "%.1f", rec["gflops"] as! Double)) GFLOP/s"
                 + ((rec["ratio"] as? Double).map { String(format: ", ratio %.2f", $0) } ?? ""))
            out.append(rec)
        }
        if let torch { _ = try? torch.request(["op": "quit"]) }
        return out
    }

    /// PyTorch on the GPU: one JSON request per line; times with CUDA events (median of 5 after a warm-up).
    static let torchScript = #"""
# hprune bench kernels --backend cuda: the PyTorch reference on the same GPU.
import json, sys
import torch
import torch.nn.functional as F
dev = "cuda"
cache = {}
def timed(fn):
    ts = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) / 1000)
    return sorted(ts)[len(ts) // 2]
def case(r):
    key = json.dumps({k: v for k, v in r.items() if k != "warmup"}, sort_keys=True)
    if key not in cache:
        g = torch.Generator(device=dev).manual_seed(0)
        if r["op"] == "gemm":
            n = r["n"]; a = torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g); w = torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g)
            cache[key] = lambda: a @ w.T
        elif r["op"] == "attention":
            q, k, v = (torch.randn(1, r["h"], r["l"], r["d"], device=dev, dtype=torch.bfloat16, generator=g) for _ in range(3))
            cache[key] = lambda: F.scaled_dot_product_attention(q, k, v)
        elif r["op"] == "gemv_bf16":
            n = r["n"]; x = torch.randn(1, n, device=dev, dtype=torch.bfloat16, generator=g); w = torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g)
            cache[key] = lambda: x @ w.T
    return cache[key]
with torch.inference_mode():
    print(json.dumps({"ready": True, "torch": torch.__version__, "device": torch.cuda.get_device_name(0)}), flush=True)
    for line in sys.stdin:
        r = json.loads(line)
        try:
            if r["op"] == "quit":
                print(json.dumps({"ok": True}), flush=True); break
            fn = case(r)
            if r.get("warmup"):
                fn(); torch.cuda.synchronize(); print(json.dumps({"ok": True}), flush=True)
            else:
                print(json.dumps({"seconds": timed(fn)}), flush=True)
        except Exception as e:
            print(json.dumps({"error": repr(e)}), flush=True)
"""#
}
