// `hprune bench kernels`: times the CPU kernels on the issue's cases (GEMM, attention, W4A16) and, when given
// a Python with PyTorch, the same shapes through PyTorch in the same run, interleaved repetition by repetition.
// Results are medians after warm-up; JSON records follow the issue's schema.
import CPUKernels
import Foundation

/// Options of a kernel benchmark run.
public struct KernelBenchOptions: Sendable {
    /// Threads for our kernels and for PyTorch (0: one per online CPU).
    public var threads: Int
    /// A Python interpreter with torch; nil runs our kernels only.
    public var comparePython: String?
    /// Timed repetitions per case (the median is reported; cases shorter than ~40 ms get more, up to 100) and
    /// untimed warm-up runs.
    public var repetitions: Int
    public var warmup: Int
    /// Only cases whose name or shape contains this text (nil: all).
    public var filter: String?
    /// Called with one line per finished case (progress on stderr, say).
    public var log: (@Sendable (String) -> Void)?

    public init(threads: Int = 0, comparePython: String? = nil, repetitions: Int = 7, warmup: Int = 2,
                filter: String? = nil, log: (@Sendable (String) -> Void)? = nil) {
        self.threads = threads
        self.comparePython = comparePython
        self.repetitions = repetitions
        self.warmup = warmup
        self.filter = filter
        self.log = log
    }
}

/// One measured case: the issue's record plus context (ISA, median seconds, W4A16 vs our bf16 GEMM).
public struct KernelBenchResult: Codable, Sendable, Equatable {
    public var name: String             // "gemm" | "attention" | "gemm_w4a16"
    public var dtype: String            // "f32" | "bf16" | "nf4" (weights; activations bf16)
    public var shape: String            // "1024x1024x1024" (M×N×K) or "B=1,H=24,L=1357,D=64"
    public var threads: Int
    public var gflops: Double
    public var referenceGflops: Double?  // PyTorch, same shape, same run
    public var ratio: Double?            // gflops / referenceGflops
    public var isa: String
    public var seconds: Double           // our median time per call
    public var bf16GemmGflops: Double?   // W4A16 only: our bf16 GEMM (X · Wᵀ) on the same shape
    public var ratioToBF16Gemm: Double?  // W4A16 only: gflops / bf16GemmGflops

    enum CodingKeys: String, CodingKey {
        case name, dtype, shape, threads, gflops, ratio, isa, seconds
        case referenceGflops = "reference_gflops"
        case bf16GemmGflops = "bf16_gemm_gflops"
        case ratioToBF16Gemm = "ratio_to_bf16_gemm"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(dtype, forKey: .dtype)
        try c.encode(shape, forKey: .shape)
        try c.encode(threads, forKey: .threads)
        try c.encode(gflops, forKey: .gflops)
        try c.encode(referenceGflops, forKey: .referenceGflops)  // null when not compared
        try c.encode(ratio, forKey: .ratio)
        try c.encode(isa, forKey: .isa)
        try c.encode(seconds, forKey: .seconds)
        if name == "gemm_w4a16" {
            try c.encode(bf16GemmGflops, forKey: .bf16GemmGflops)
            try c.encode(ratioToBF16Gemm, forKey: .ratioToBF16Gemm)
        }
    }
}

/// Why a benchmark could not run (the kernel benchmark, or a Python reference process).
public enum BenchError: Error, CustomStringConvertible {
    case python(String)
    case kernel(String)

    public var description: String {
        switch self {
        case .python(let m): return "bench: PyTorch reference: \(m)"
        case .kernel(let m): return "bench: \(m)"
        }
    }
}

// ── cases ────────────────────────────────────────────────────────────────────────────────────────────────

private enum BenchCase {
    case gemm(m: Int, n: Int, k: Int, bf16: Bool)
    case attention(b: Int, h: Int, l: Int, d: Int, bf16: Bool)
    case w4a16(m: Int, n: Int, k: Int)

    var name: String {
        switch self {
        case .gemm: return "gemm"
        case .attention: return "attention"
        case .w4a16: return "gemm_w4a16"
        }
    }
    var dtype: String {
        switch self {
        case .gemm(_, _, _, let b), .attention(_, _, _, _, let b): return b ? "bf16" : "f32"
        case .w4a16: return "nf4"
        }
    }
    var shape: String {
        switch self {
        case let .gemm(m, n, k, _): return "\(m)x\(n)x\(k)"
        case let .attention(b, h, l, d, _): return "B=\(b),H=\(h),L=\(l),D=\(d)"
        case let .w4a16(m, n, k): return "\(m)x\(n)x\(k)"
        }
    }
    var flops: Double {
        switch self {
        case let .gemm(m, n, k, _), let .w4a16(m, n, k): return 2 * Double(m) * Double(n) * Double(k)
        case let .attention(b, h, l, d, _): return 4 * Double(b * h) * Double(l) * Double(l) * Double(d)
        }
    }
    /// The request the Python side understands (see `torchScript`).
    var torchRequest: [String: Any] {
        switch self {
        case let .gemm(m, n, k, b): return ["kind": "gemm", "dtype": b ? "bf16" : "f32", "m": m, "n": n, "k": k]
        case let .attention(bb, h, l, d, b):
            return ["kind": "attention", "dtype": b ? "bf16" : "f32", "b": bb, "h": h, "l": l, "d": d]
        case let .w4a16(m, n, k): return ["kind": "linear", "dtype": "bf16", "m": m, "n": n, "k": k]
        }
    }
}

/// The issue's cases, in order.
private let allCases: [BenchCase] = {
    var cases: [BenchCase] = []
    for bf16 in [false, true] {
        for (m, n, k) in [(1024, 1024, 1024), (2048, 2048, 2048), (1024, 1536, 1536), (1024, 6144, 1536)] {
            cases.append(.gemm(m: m, n: n, k: k, bf16: bf16))
        }
    }
    cases.append(.attention(b: 1, h: 24, l: 1357, d: 64, bf16: false))
    cases.append(.attention(b: 1, h: 24, l: 1357, d: 64, bf16: true))
    for m in [1, 16, 256, 1024] { cases.append(.w4a16(m: m, n: 1536, k: 1536)) }
    return cases
}()

// ── our side ─────────────────────────────────────────────────────────────────────────────────────────────

/// Deterministic pseudo-random data in [-1, 1).
private func randomFloats(_ n: Int, seed: UInt64) -> [Float] {
    var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<n).map { _ in
        s ^= s << 13; s ^= s >> 7; s ^= s << 17
        return Float(s >> 40) / Float(1 << 23) - 1
    }
}

private func toBF16(_ xs: [Float]) -> [UInt16] {
    var out = [UInt16](repeating: 0, count: xs.count)
    hp_f32_to_bf16_array(xs, &out, xs.count)
    return out
}

/// Prepared inputs and a closure that runs one call of our kernel.
private final class OurRunner {
    let run: () -> Int32
    private var keep: [AnyObject] = []

    init(_ c: BenchCase) {
        switch c {
        case let .gemm(m, n, k, bf16):
            let a = Box(randomFloats(m * k, seed: 1)), b = Box(randomFloats(k * n, seed: 2))
            if bf16 {
                let ah = Box(toBF16(a.v)), bh = Box(toBF16(b.v)), out = Box([UInt16](repeating: 0, count: m * n))
                run = { hp_gemm_bf16(0, 0, m, n, k, 1, ah.v, k, bh.v, n, 0, &out.v, HP_BF16, n, nil, HP_ACT_NONE) }
                keep = [ah, bh, out]
            } else {
                let out = Box([Float](repeating: 0, count: m * n))
                run = { hp_gemm_f32(0, 0, m, n, k, 1, a.v, k, b.v, n, 0, &out.v, n, nil, HP_ACT_NONE) }
                keep = [a, b, out]
            }
        case let .attention(bb, h, l, d, bf16):
            let n = bb * h * l * d
            let q = Box(randomFloats(n, seed: 3)), k = Box(randomFloats(n, seed: 4)), v = Box(randomFloats(n, seed: 5))
            let lse = RawBox([Float](repeating: 0, count: bb * h * l))
            var args = hp_attn_args()
            args.B = bb; args.H = h; args.Lq = l; args.Lk = l; args.D = d
            args.scale = 1 / Float(d).squareRoot()
            if bf16 {
                let qh = RawBox(toBF16(q.v)), kh = RawBox(toBF16(k.v)), vh = RawBox(toBF16(v.v))
                let o = RawBox([UInt16](repeating: 0, count: n))
                args.dtype = HP_BF16
                args.q = UnsafeRawPointer(qh.p); args.k = UnsafeRawPointer(kh.p); args.v = UnsafeRawPointer(vh.p)
                args.o = o.p
                keep = [qh, kh, vh, o, lse]
            } else {
                let qf = RawBox(q.v), kf = RawBox(k.v), vf = RawBox(v.v), o = RawBox([Float](repeating: 0, count: n))
                args.dtype = HP_F32
                args.q = UnsafeRawPointer(qf.p); args.k = UnsafeRawPointer(kf.p); args.v = UnsafeRawPointer(vf.p)
                args.o = o.p
                keep = [qf, kf, vf, o, lse]
            }
            let argBox = RawBox([args])
            argBox.p.assumingMemoryBound(to: hp_attn_args.self).pointee.lse = lse.mutablePointer
            keep.append(argBox)
            run = { hp_attention_forward(argBox.p.assumingMemoryBound(to: hp_attn_args.self)) }
        case let .w4a16(m, n, k):
            let w = randomFloats(n * k, seed: 6)
            let data = RawBox([UInt8](repeating: 0, count: n * k / 2))
            let absmax = RawBox([Float](repeating: 0, count: (n * k + 63) / 64))
            _ = hp_quantize_4bit(w, n * k, 64, hp_code_table(HP_CODE_NF4), data.p.assumingMemoryBound(to: UInt8.self),
                                 absmax.p.assumingMemoryBound(to: Float.self))
            let x = RawBox(toBF16(randomFloats(m * k, seed: 7))), y = RawBox([UInt16](repeating: 0, count: m * n))
            let weight = RawBox([hp_q4_weight(data: UnsafePointer(data.p.assumingMemoryBound(to: UInt8.self)),
                                              scale: UnsafePointer(absmax.p.assumingMemoryBound(to: Float.self)),
                                              zero: nil, code: hp_code_table(HP_CODE_NF4), n: n, k: k, block: 64)])
            keep = [data, absmax, x, y, weight]
            run = {
                hp_gemm_w4a16(m, x.p, HP_BF16, k, weight.p.assumingMemoryBound(to: hp_q4_weight.self), nil,
                              HP_ACT_NONE, y.p, HP_BF16, n)
            }
        }
    }

    /// Our bf16 GEMM on the W4A16 shape: Y = X · Wᵀ with W [N, K] in bf16.
    static func bf16Linear(m: Int, n: Int, k: Int) -> OurRunner {
        OurRunner(linear: (m, n, k))
    }

    private init(linear: (Int, Int, Int)) {
        let (m, n, k) = linear
        let x = Box(toBF16(randomFloats(m * k, seed: 7))), w = Box(toBF16(randomFloats(n * k, seed: 6)))
        let y = Box([UInt16](repeating: 0, count: m * n))
        keep = [x, w, y]
        run = { hp_gemm_bf16(0, 1, m, n, k, 1, x.v, k, w.v, k, 0, &y.v, HP_BF16, n, nil, HP_ACT_NONE) }
    }
}

/// A mutable array in a class, so closures can hold it.
private final class Box<T> {
    var v: [T]
    init(_ v: [T]) { self.v = v }
}

/// A copy of an array in stable, manually managed memory (pointers into it stay valid).
private final class RawBox {
    let p: UnsafeMutableRawPointer
    init<T>(_ v: [T]) {
        let bytes = max(1, v.count * MemoryLayout<T>.stride)
        p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        v.withUnsafeBytes { src in if let base = src.baseAddress { p.copyMemory(from: base, byteCount: src.count) } }
    }
    var mutablePointer: UnsafeMutablePointer<Float> { p.assumingMemoryBound(to: Float.self) }
    deinit { p.deallocate() }
}

private func seconds(_ body: () -> Int32) throws -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    let rc = body()
    let t1 = DispatchTime.now().uptimeNanoseconds
    if rc != 0 { throw BenchError.kernel("kernel returned error \(rc)") }
    return Double(t1 - t0) * 1e-9
}


// ── PyTorch side ─────────────────────────────────────────────────────────────────────────────────────────

/// The reference script: a line-oriented JSON server so our runs and PyTorch's can alternate.
let torchScript = #"""
# hprune bench kernels: PyTorch reference. Reads one JSON request per line, answers one JSON line.
import json, sys, time
import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
DT = {"f32": torch.float32, "bf16": torch.bfloat16}

def setup(r):
    dt = DT[r["dtype"]]
    if r["kind"] == "gemm":
        a = torch.randn(r["m"], r["k"], dtype=dt); b = torch.randn(r["k"], r["n"], dtype=dt)
        return lambda: torch.matmul(a, b)
    if r["kind"] == "linear":  # X[M,K] · W[N,K]ᵀ, the W4A16 reference in bf16
        x = torch.randn(r["m"], r["k"], dtype=dt); w = torch.randn(r["n"], r["k"], dtype=dt)
        return lambda: F.linear(x, w)
    if r["kind"] == "attention":
        shape = (r["b"], r["h"], r["l"], r["d"])
        q, k, v = (torch.randn(*shape, dtype=dt) for _ in range(3))
        return lambda: F.scaled_dot_product_attention(q, k, v)
    raise ValueError("unknown kind " + r["kind"])

fn = None
with torch.inference_mode():
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        r = json.loads(line)
        try:
            if r["op"] == "setup":
                fn = setup(r)
                for _ in range(int(r.get("warmup", 2))):
                    fn()
                print(json.dumps({"ok": True}), flush=True)
            elif r["op"] == "time":
                t = time.perf_counter(); fn(); dt = time.perf_counter() - t
                print(json.dumps({"seconds": dt}), flush=True)
            elif r["op"] == "quit":
                break
        except Exception as e:  # report, keep serving
            print(json.dumps({"error": repr(e)}), flush=True)
"""#

// ── driver ───────────────────────────────────────────────────────────────────────────────────────────────

/// Runs the issue's kernel benchmark cases; with `comparePython`, also PyTorch, interleaved per repetition.
public func runKernelBench(_ options: KernelBenchOptions) throws -> [KernelBenchResult] {
    let threads = Int(hp_threads_init(Int32(clamping: options.threads)))
    let isa = String(cString: hp_selected_isa())
    // OpenMP threads that keep spinning after PyTorch returns would steal the cores our next run needs
    // (libgomp and Intel OpenMP spin for milliseconds by default); interleaving is only fair if they sleep.
    let torch = try options.comparePython.map {
        try PythonServer(python: $0, script: torchScript, name: "bench-torch", arguments: [String(threads)],
                         environment: ["OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"])
    }
    let reps = max(1, options.repetitions)
    var results: [KernelBenchResult] = []
    for c in allCases {
        if let f = options.filter, !(c.name.contains(f) || c.shape.contains(f) || c.dtype.contains(f)) { continue }
        let ours = OurRunner(c)
        var warm = 0.0
        for _ in 0..<max(1, options.warmup) { warm = try seconds(ours.run) }
        if let torch { _ = try torch.request(c.torchRequest.merging(["op": "setup", "warmup": options.warmup]) { $1 }) }
        // Short kernels get more repetitions (about 0.3 s of ours, at most 100) so the median is stable.
        let caseReps = min(max(reps, Int(0.3 / max(warm, 1e-6))), max(reps, 100))
        var mine: [Double] = [], theirs: [Double] = []
        for _ in 0..<caseReps {
            mine.append(try seconds(ours.run))
            if let torch, let s = try torch.request(["op": "time"])["seconds"] as? Double { theirs.append(s) }
        }
        let t = median(mine)
        var r = KernelBenchResult(name: c.name, dtype: c.dtype, shape: c.shape, threads: threads,
                                  gflops: c.flops / t / 1e9, referenceGflops: nil, ratio: nil, isa: isa, seconds: t)
        if !theirs.isEmpty {
            r.referenceGflops = c.flops / median(theirs) / 1e9
            r.ratio = r.gflops / r.referenceGflops!
        }
        if case let .w4a16(m, n, k) = c {
            let lin = OurRunner.bf16Linear(m: m, n: n, k: k)
            for _ in 0..<options.warmup { _ = try seconds(lin.run) }
            // Alternate W4A16 and bf16 runs so both see the same machine load.
            var w4: [Double] = [], bf: [Double] = []
            for _ in 0..<caseReps {
                w4.append(try seconds(ours.run))
                bf.append(try seconds(lin.run))
            }
            r.bf16GemmGflops = c.flops / median(bf) / 1e9
            r.ratioToBF16Gemm = median(bf) / median(w4)
        }
        options.log?(formatKernelBenchTable([r], header: false))
        results.append(r)
    }
    return results
}

/// Results as the issue's JSON array (pretty-printed, keys in a stable order).
public func kernelBenchJSON(_ results: [KernelBenchResult]) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    guard let data = try? enc.encode(results) else { return "[]" }
    return String(decoding: data, as: UTF8.self)
}

/// A plain text table of the results.
public func formatKernelBenchTable(_ results: [KernelBenchResult], header: Bool = true) -> String {
    func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
    func num(_ x: Double?, _ digits: Int = 1) -> String { x.map { String(format: "%.\(digits)f", $0) } ?? "-" }
    var lines: [String] = []
    if header {
        lines.append(pad("kernel", 11) + pad("dtype", 6) + pad("shape", 24) + pad("thr", 4) + pad("GFLOP/s", 9)
                     + pad("torch", 9) + pad("ratio", 7) + "notes")
    }
    for r in results {
        var note = r.isa
        if let b = r.bf16GemmGflops, let q = r.ratioToBF16Gemm {
            note += String(format: "; bf16 GEMM %.1f GFLOP/s, W4A16/bf16 %.2fx", b, q)
        }
        lines.append(pad(r.name, 11) + pad(r.dtype, 6) + pad(r.shape, 24) + pad(String(r.threads), 4)
                     + pad(num(r.gflops), 9) + pad(num(r.referenceGflops), 9) + pad(num(r.ratio, 2), 7) + note)
    }
    return lines.joined(separator: "\n")
}
