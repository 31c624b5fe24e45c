// The block-cooperative CUDA kernels (row-wise, reduction, W4A16, attention) built for the host from their own
// source and run by a small block emulator — one OS thread per CUDA thread, __syncthreads as a block barrier,
// __shfl_xor_sync through a per-warp exchange, __shared__ memory per block — against ReferenceBackend. Launch
// shapes follow CUDABackend's. What remains for the GPU: PTX-level behaviour, performance, cuBLASLt.
@testable import CUDABackend
import BackendConformance
import Foundation
import Testing
import TensorCore

/// The rowwise, reduction, w4a16 and attention families as a host shared library with a block emulator.
final class HostBlockKernels: @unchecked Sendable {
    static let shared: Result<HostBlockKernels, Error>? = hostCXX.map { cxx in Result { try HostBlockKernels(cxx) } }
    let handle: UnsafeMutableRawPointer
    typealias Launch = @convention(c) (UInt32, UInt32, UInt32, @convention(c) (UnsafeMutableRawPointer?) -> Void,
                                       UnsafeMutableRawPointer?) -> Void
    let launchFn: Launch

    static let shim = #"""
#include <cmath>
#include <cstring>
#include <barrier>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __constant__ static const
#define __shared__ static
struct hp_dim3 { unsigned x, y, z; };
static thread_local hp_dim3 threadIdx = {0, 0, 0};
static hp_dim3 blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
static std::barrier<> *hp_block_bar;
static std::barrier<> *hp_warp_bar[32];
static double hp_xd[1024];
static float hp_xf[1024];
static float hp_dynamic_shared[1 << 16];
static inline void __syncthreads() { hp_block_bar->arrive_and_wait(); }
static inline double __shfl_xor_sync(unsigned, double v, int o) {
    const unsigned t = threadIdx.x;
    hp_xd[t] = v; hp_warp_bar[t >> 5]->arrive_and_wait();
    const double r = hp_xd[t ^ o]; hp_warp_bar[t >> 5]->arrive_and_wait();
    return r;
}
static inline float __shfl_xor_sync(unsigned, float v, int o) {
    const unsigned t = threadIdx.x;
    hp_xf[t] = v; hp_warp_bar[t >> 5]->arrive_and_wait();
    const float r = hp_xf[t ^ o]; hp_warp_bar[t >> 5]->arrive_and_wait();
    return r;
}
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
"""#
    static let tail = #"""
static inline float bf16_to_f32(u16 h) { unsigned u = (unsigned)h << 16; float f; std::memcpy(&f, &u, 4); return f; }
static inline u16 f32_to_bf16(float f) { unsigned u; std::memcpy(&u, &f, 4); u += 0x7FFFu + ((u >> 16) & 1u); return (u16)(u >> 16); }
"""#
    static let launcher = #"""
/* Runs a grid block after block; each block's threads are OS threads calling body(ctx) with their threadIdx. */
extern "C" void hp_emulate(unsigned gx, unsigned gy, unsigned bx, void (*body)(void *), void *ctx) {
    gridDim = {gx, gy, 1}; blockDim = {bx, 1, 1};
    for (unsigned y = 0; y < gy; y++) for (unsigned x = 0; x < gx; x++) {
        blockIdx = {x, y, 0};
        std::barrier<> block(bx);
        std::vector<std::barrier<> *> warps;
        for (unsigned w = 0; w < (bx + 31) / 32; w++) { warps.push_back(new std::barrier<>(bx - w * 32 < 32 ? bx - w * 32 : 32)); hp_warp_bar[w] = warps.back(); }
        hp_block_bar = &block;
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < bx; t++) ts.emplace_back([=] { threadIdx = {t, 0, 0}; body(ctx); });
        for (auto &t : ts) t.join();
        for (auto *w : warps) delete w;
    }
}
"""#

    init(_ cxx: String) throws {
        let dir = NSTemporaryDirectory() + "hprune-hostb-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let bodies = ["rowwise", "reduction", "w4a16", "attention"].map { n in KernelFamily.all.first { $0.name == n }!.body }
            .joined(separator: "\n").replacingOccurrences(of: "extern __shared__ float tile[];", with: "float *tile = hp_dynamic_shared;")
        let prelude = KernelPrelude.source.replacingOccurrences(of: "#ifdef __CUDACC_RTC__\n/* Sum", with: "#if 1\n/* Sum")
        let src = Self.shim + prelude + Self.tail + bodies + Self.launcher
        try src.write(toFile: "\(dir)/k.cpp", atomically: true, encoding: .utf8)
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: hostCXX!)
        cc.arguments = ["-std=c++20", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-pthread", "-o", "\(dir)/libk.so", "\(dir)/k.cpp"]
        try cc.run()
        cc.waitUntilExit()
        guard cc.terminationStatus == 0, let h = dlopen("\(dir)/libk.so", RTLD_NOW | RTLD_LOCAL) else {
            throw CUDAError.nvrtc("the host build of the block kernels failed (source in \(dir)/k.cpp)", log: "")
        }
        handle = h
        launchFn = unsafeBitCast(dlsym(h, "hp_emulate")!, to: Launch.self)
    }

    func fn<T>(_ name: String, _: T.Type) -> T { unsafeBitCast(dlsym(handle, name)!, to: T.self) }

    /// The emulator's block state is global: one launch at a time.
    private let lock = NSLock()

    /// Runs `body` as every thread of a (gx, gy) grid of bx-thread blocks.
    func launch(_ gx: Int, _ gy: Int, _ bx: Int, _ body: @escaping () -> Void) {
        lock.lock()
        defer { lock.unlock() }
        final class Box { let f: () -> Void; init(_ f: @escaping () -> Void) { self.f = f } }
        let box = Unmanaged.passRetained(Box(body))
        launchFn(UInt32(gx), UInt32(gy), UInt32(bx), { ctx in Unmanaged<Box>.fromOpaque(ctx!).takeUnretainedValue().f() }, box.toOpaque())
        box.release()
    }
}

/// A host buffer with a stable address for the emulated kernels.
final class Buf: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    let n: Int
    init(_ v: [Float]) { n = v.count; p = .allocate(capacity: max(n, 1)); p.initialize(from: v, count: n) }
    init(zeros n: Int) { self.n = n; p = .allocate(capacity: max(n, 1)); p.initialize(repeating: 0, count: max(n, 1)) }
    var values: [Float] { Array(UnsafeBufferPointer(start: p, count: n)) }
    deinit { p.deallocate() }
}

@Suite("CUDA block kernels on the host (block emulator) vs the reference", .serialized)
struct HostBlockKernelTests {
    let ref = ReferenceBackend()
    func k() throws -> HostBlockKernels { try #require(try HostBlockKernels.shared?.get()) }

    @Test("LayerNorm, RMSNorm and softmax, forward and backward", .enabled(if: hostCXX != nil))
    func rowwise() throws {
        let k = try k()
        var r = Inputs(17)
        let (rows, d) = (3, 65)
        let x = r.uniform(rows * d, -2, 3), g = r.uniform(rows * d), w = r.uniform(d)
        let tx = try ref.tensor(x, shape: [rows, d]), tg = try ref.tensor(g, shape: [rows, d]), tw = try ref.tensor(w, shape: [d])
        typealias LN = @convention(c) (UnsafePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                       UnsafeMutablePointer<Float>, Int64, Int64, Float) -> Void
        let bx = Buf(x), by = Buf(zeros: rows * d), bm = Buf(zeros: rows), brs = Buf(zeros: rows)
        let ln = k.fn("hp_layernorm", LN.self)
        k.launch(rows, 1, 256) { ln(bx.p, by.p, bm.p, brs.p, Int64(rows), Int64(d), 1e-6) }
        let want = try ref.layerNorm(tx, eps: 1e-6)
        #expect(mismatch(["y": by.values, "mean": bm.values, "rstd": brs.values],
                         ["y": try ref.floats(want.y), "mean": try ref.floats(want.mean), "rstd": try ref.floats(want.rstd)], .rowwise) == nil)

        typealias LNB = @convention(c) (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                                        UnsafeMutablePointer<Float>, Int64, Int64) -> Void
        let lnb = k.fn("hp_layernorm_backward", LNB.self)
        let bg = Buf(g), bdx = Buf(zeros: rows * d), rm = Buf(try ref.floats(want.mean)), rr = Buf(try ref.floats(want.rstd))
        k.launch(rows, 1, 256) { lnb(bg.p, bx.p, rm.p, rr.p, bdx.p, Int64(rows), Int64(d)) }
        #expect(mismatch(["dx": bdx.values], ["dx": try ref.floats(try ref.layerNormBackward(tg, tx, mean: want.mean, rstd: want.rstd))],
                         .rowwise) == nil)

        typealias RMS = @convention(c) (UnsafePointer<Float>, UnsafePointer<Float>?, UnsafeMutablePointer<Float>,
                                        UnsafeMutablePointer<Float>, Int64, Int64, Float) -> Void
        let rms = k.fn("hp_rmsnorm", RMS.self), bw = Buf(w)
        let ry = Buf(zeros: rows * d), rrs = Buf(zeros: rows)
        k.launch(rows, 1, 256) { rms(bx.p, bw.p, ry.p, rrs.p, Int64(rows), Int64(d), 1e-6) }
        let wr = try ref.rmsNorm(tx, weight: tw, eps: 1e-6)
        #expect(mismatch(["y": ry.values, "rstd": rrs.values], ["y": try ref.floats(wr.y), "rstd": try ref.floats(wr.rstd)], .rowwise) == nil)

        typealias RMSB = @convention(c) (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>?, UnsafePointer<Float>,
                                         UnsafeMutablePointer<Float>, Int64, Int64) -> Void
        typealias DW = @convention(c) (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>,
                                       Int64, Int64) -> Void
        let rmsb = k.fn("hp_rmsnorm_backward", RMSB.self), dwk = k.fn("hp_rmsnorm_dweight", DW.self)
        let rdx = Buf(zeros: rows * d), rdw = Buf(zeros: d), rs = Buf(try ref.floats(wr.rstd))
        k.launch(rows, 1, 256) { rmsb(bg.p, bx.p, bw.p, rs.p, rdx.p, Int64(rows), Int64(d)) }
        k.launch(1, 1, 256) { dwk(bg.p, bx.p, rs.p, rdw.p, Int64(rows), Int64(d)) }
        let wb = try ref.rmsNormBackward(tg, tx, weight: tw, rstd: wr.rstd)
        #expect(mismatch(["dx": rdx.values, "dw": rdw.values], ["dx": try ref.floats(wb.dx), "dw": try ref.floats(wb.dweight!)], .rowwise) == nil)

        typealias SM = @convention(c) (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int64, Int64) -> Void
        typealias SMB = @convention(c) (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int64, Int64) -> Void
        let sm = k.fn("hp_softmax", SM.self), smb = k.fn("hp_softmax_backward", SMB.self)
        let sy = Buf(zeros: rows * d), sdx = Buf(zeros: rows * d)
        k.launch(rows, 1, 256) { sm(bx.p, sy.p, Int64(rows), Int64(d)) }
        let wy = try ref.softmax(tx)
        #expect(mismatch(["y": sy.values], ["y": try ref.floats(wy)], .rowwise) == nil)
        let wyb = Buf(try ref.floats(wy))
        k.launch(rows, 1, 256) { smb(bg.p, wyb.p, sdx.p, Int64(rows), Int64(d)) }
        #expect(mismatch(["dx": sdx.values], ["dx": try ref.floats(try ref.softmaxBackward(tg, wy))], .rowwise) == nil)
    }

    @Test("sum over an axis, square partials and AdamW", .enabled(if: hostCXX != nil))
    func reductions() throws {
        let k = try k()
        var r = Inputs(23)
        let shape = [3, 7, 5], x = r.uniform(105), tx = try ref.tensor(x, shape: shape)
        typealias SA = @convention(c) (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int64, Int64, Int64, Double) -> Void
        let sa = k.fn("hp_sum_axis", SA.self), bx = Buf(x), out = Buf(zeros: 15)
        k.launch(15, 1, 256) { sa(bx.p, out.p, 3, 7, 5, 1) }                 // axis 1: outer 3, r 7, inner 5
        #expect(mismatch(["s": out.values], ["s": try ref.floats(try ref.sum(tx, axes: [1]))], .rowwise) == nil)

        typealias SP = @convention(c) (UnsafePointer<Float>, UnsafePointer<Float>?, UnsafeMutablePointer<Double>, Int64) -> Void
        let sp = k.fn("hp_square_partials", SP.self), y = r.uniform(105), by = Buf(y)
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: 2)
        defer { partial.deallocate() }
        k.launch(2, 1, 256) { sp(bx.p, by.p, partial, 105) }
        let mse = Float((partial[0] + partial[1]) / 105)
        #expect(mismatch(["l": [mse]], ["l": try ref.floats(try ref.mse(tx, try ref.tensor(y, shape: shape)))], .rowwise) == nil)

        typealias AW = @convention(c) (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>,
                                       UnsafeMutablePointer<Float>, Int64, Double, Double, Double, Double, Double, Double, Double) -> Void
        let aw = k.fn("hp_adamw", AW.self)
        let p0 = r.uniform(40), bp = Buf(p0), bm = Buf(zeros: 40), bv = Buf(zeros: 40)
        let tp = try ref.tensor(p0, shape: [40]), tm = try ref.zeros([40], dtype: .f32), tv = try ref.zeros([40], dtype: .f32)
        let cfg = AdamWConfig(learningRate: 1e-2, weightDecay: 0.1)
        for step in 1...3 {
            let g = r.uniform(40), bg = Buf(g)
            let b1 = Double(cfg.beta1), b2 = Double(cfg.beta2)
            k.launch(1, 1, 256) {
                aw(bp.p, bg.p, bm.p, bv.p, 40, Double(cfg.learningRate), b1, b2, Double(cfg.eps), Double(cfg.weightDecay),
                   1 - pow(b1, Double(step)), 1 - pow(b2, Double(step)))
            }
            try ref.adamw(param: tp, grad: try ref.tensor(g, shape: [40]), m: tm, v: tv, step: step, config: cfg)
        }
        #expect(mismatch(["p": bp.values, "m": bm.values, "v": bv.values],
                         ["p": try ref.floats(tp), "m": try ref.floats(tm), "v": try ref.floats(tv)], .rowwise) == nil)
    }

    @Test("W4A16 nf4 and int4-with-zero, f32 activations, bias and activations", .enabled(if: hostCXX != nil))
    func w4a16() throws {
        let k = try k()
        var r = Inputs(28)
        let (m, n, kk) = (10, 7, 65)                                       // 10 rows: two row tiles of 8
        typealias W4 = @convention(c) (UnsafeRawPointer, Int32, UnsafeRawPointer, UnsafePointer<Float>, UnsafePointer<Float>?,
                                       UnsafePointer<Float>, UnsafePointer<Float>?, Int32, UnsafeMutablePointer<Float>,
                                       Int64, Int64, Int64, Int64) -> Void
        let w4 = k.fn("hp_w4a16", W4.self)
        for (withZero, act) in [(false, Activation.none), (true, .geluTanh), (false, .silu)] {
            let w = try packedWeight(ref, n: n, k: kk, blockSize: withZero ? 32 : 64, withZero: withZero, seed: 29)
            let x = r.uniform(m * kk), bias = r.uniform(n)
            let bx = Buf(x), bb = Buf(bias), out = Buf(zeros: m * n)
            let packed = try ref.bytes(w.packed), scale = Buf(try ref.floats(w.scale)), code = Buf(try ref.floats(w.codebook))
            let zero = try w.zero.map { Buf(try ref.floats($0)) }
            packed.withUnsafeBytes { pk in
                let pkp = pk.baseAddress!
                k.launch((n + 7) / 8, (m + 7) / 8, 256) {
                    w4(bx.p, 0, pkp, scale.p, zero?.p, code.p, bb.p, CUDABackend.actCode(act), out.p, Int64(m), Int64(n), Int64(kk),
                       Int64(w.blockSize))
                }
            }
            let want = try ref.floats(try ref.matmulW4A16(try ref.tensor(x, shape: [m, kk]), w, bias: try ref.tensor(bias, shape: [n]),
                                                          activation: act))
            #expect(mismatch(["y": out.values], ["y": want], .contraction) == nil, "zero \(withZero) \(act)")
        }
    }

    @Test("attention forward and backward (dQ, dK, dV), f32, several 64-row tiles", .enabled(if: hostCXX != nil))
    func attention() throws {
        let k = try k()
        var r = Inputs(30)
        let (bh, lq, lk, d) = (2, 70, 67, 16)                            // more than one 64-row tile each way
        let q = r.uniform(bh * lq * d, -2, 2), kv = r.uniform(bh * lk * d, -2, 2), v = r.uniform(bh * lk * d)
        let tq = try ref.tensor(q, shape: [1, bh, lq, d]), tk = try ref.tensor(kv, shape: [1, bh, lk, d]), tv = try ref.tensor(v, shape: [1, bh, lk, d])
        typealias AF = @convention(c) (UnsafeRawPointer, UnsafeRawPointer, UnsafeRawPointer, UnsafeMutableRawPointer,
                                       UnsafeMutablePointer<Float>, Int64, Int64, Int64, Float, Int32) -> Void
        let af = k.fn("hp_attention_forward", AF.self)
        let bq = Buf(q), bk = Buf(kv), bv = Buf(v), bo = Buf(zeros: bh * lq * d), bl = Buf(zeros: bh * lq)
        let t = CUDABackend.attentionTile
        k.launch((lq + t - 1) / t, bh, t) { af(bq.p, bk.p, bv.p, bo.p, bl.p, Int64(lq), Int64(lk), Int64(d), 0.25, 0) }
        let want = try ref.attention(tq, tk, tv, scale: 0.25)
        #expect(mismatch(["out": bo.values, "lse": bl.values], ["out": try ref.floats(want.out), "lse": try ref.floats(want.lse)],
                         .contraction) == nil)

        typealias RD = @convention(c) (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int64, Int64) -> Void
        typealias KV = @convention(c) (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                                       UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                                       Int64, Int64, Int64, Float) -> Void
        typealias DQ = @convention(c) (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                                       UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>,
                                       Int64, Int64, Int64, Float) -> Void
        let g = r.uniform(bh * lq * d), bg = Buf(g), tg = try ref.tensor(g, shape: [1, bh, lq, d])
        let wo = Buf(try ref.floats(want.out)), wl = Buf(try ref.floats(want.lse)), rowdot = Buf(zeros: bh * lq)
        let dq = Buf(zeros: bh * lq * d), dk = Buf(zeros: bh * lk * d), dv = Buf(zeros: bh * lk * d)
        let rd = k.fn("hp_attention_rowdot", RD.self), kvk = k.fn("hp_attention_backward_kv", KV.self), dqk = k.fn("hp_attention_backward_q", DQ.self)
        k.launch(1, 1, 256) { rd(bg.p, wo.p, rowdot.p, Int64(bh * lq), Int64(d)) }
        k.launch((lk + t - 1) / t, bh, t) { kvk(bg.p, bq.p, bk.p, bv.p, wl.p, rowdot.p, dk.p, dv.p, Int64(lq), Int64(lk), Int64(d), 0.25) }
        k.launch((lq + t - 1) / t, bh, t) { dqk(bg.p, bq.p, bk.p, bv.p, wl.p, rowdot.p, dq.p, Int64(lq), Int64(lk), Int64(d), 0.25) }
        let wb = try ref.attentionBackward(tg, tq, tk, tv, out: want.out, lse: want.lse, scale: 0.25)
        #expect(mismatch(["dq": dq.values, "dk": dk.values, "dv": dv.values],
                         ["dq": try ref.floats(wb.dq), "dk": try ref.floats(wb.dk), "dv": try ref.floats(wb.dv)], .contraction) == nil)
    }
}
