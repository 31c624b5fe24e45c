// The grid-stride CUDA kernels (layout and elementwise families) built for the host from their own source — one
// "thread" walking the whole grid, the prelude's GPU-only parts left out — and run against ReferenceBackend on the
// conformance inputs. Checks their index arithmetic and formulas without a GPU; block-cooperative kernels (norms,
// reductions, attention, W4A16) need the device check.
@testable import CUDABackend
import BackendConformance
import Foundation
import Testing
import TensorCore

/// The layout + elementwise families as a host shared library, built once per test process.
final class HostKernels: @unchecked Sendable {
    static let shared: Result<HostKernels, Error>? = hostCXX.map { cxx in Result { try HostKernels(cxx) } }
    let handle: UnsafeMutableRawPointer

    static let shim = #"""
#include <cmath>
#include <cstring>
#define __global__
#define __device__
#define __forceinline__ inline
#define __constant__ static const
struct hp_dim3 { unsigned x, y, z; };
static const hp_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
"""#
    /// The conversions the cast kernels need (those kernels are not what this test checks: PTX cvt is the device's).
    static let conversions = #"""
static inline float bf16_to_f32(u16 h) { unsigned u = (unsigned)h << 16; float f; std::memcpy(&f, &u, 4); return f; }
static inline u16 f32_to_bf16(float f) { unsigned u; std::memcpy(&u, &f, 4); u += 0x7FFFu + ((u >> 16) & 1u); return (u16)(u >> 16); }
static inline u16 f32_to_f16(float f) { _Float16 h = (_Float16)f; u16 r; std::memcpy(&r, &h, 2); return r; }
static inline float f16_to_f32(u16 b) { _Float16 h; std::memcpy(&h, &b, 2); return (float)h; }
"""#

    init(_ cxx: String) throws {
        let dir = NSTemporaryDirectory() + "hprune-hostk-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let families = ["layout", "elementwise"].map { n in KernelFamily.all.first { $0.name == n }!.body }
        let src = Self.shim + KernelPrelude.source + Self.conversions + families.joined(separator: "\n")
        try src.write(toFile: "\(dir)/k.cpp", atomically: true, encoding: .utf8)
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: hostCXX!)
        cc.arguments = ["-std=c++17", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", "\(dir)/libk.so", "\(dir)/k.cpp"]
        try cc.run()
        cc.waitUntilExit()
        guard cc.terminationStatus == 0, let h = dlopen("\(dir)/libk.so", RTLD_NOW | RTLD_LOCAL) else {
            throw CUDAError.nvrtc("the host build of the layout/elementwise kernels failed", log: "")
        }
        handle = h
    }

    func fn<T>(_ name: String, _: T.Type) -> T { unsafeBitCast(dlsym(handle, name)!, to: T.self) }
}

typealias P = UnsafeMutablePointer<Float>
typealias CP = UnsafePointer<Float>

@Suite("CUDA grid-stride kernels on the host vs the reference")
struct HostKernelTests {
    let ref = ReferenceBackend()

    func kernels() throws -> HostKernels { try #require(try HostKernels.shared?.get()) }

    /// Runs `body` with an output buffer of n floats and returns it.
    func out(_ n: Int, _ body: (P) -> Void) -> [Float] {
        var y = [Float](repeating: .nan, count: n)
        y.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
        return y
    }

    @Test("permute, copy2d (concat/slice), patchify and unpatchify", .enabled(if: hostCXX != nil))
    func layout() throws {
        let k = try kernels()
        let permute = k.fn("hp_permute_4", (@convention(c) (CP, P, Int64, UnsafePointer<Int64>) -> Void).self)
        var r = Inputs(4)
        let shape = [2, 3, 5, 4], perm = [2, 0, 3, 1]
        let x = r.uniform(shape.reduce(1, *))
        let d = CUDABackend.permuteDims(shape, perm).map(Int64.init)
        let got = out(x.count) { y in permute(x, y, Int64(x.count), d) }
        let want = try ref.floats(try ref.transpose(try ref.tensor(x, shape: shape), perm))
        #expect(mismatch(["t": got], ["t": want], .exact) == nil)

        let copy2d = k.fn("hp_copy2d", (@convention(c) (P, Int64, CP, Int64, Int64, Int64) -> Void).self)
        let a = r.uniform(3 * 4), b = r.uniform(3 * 2)                 // concat (3,4) and (3,2) along axis 1
        let cat = out(3 * 6) { y in
            copy2d(y, 24, a, 16, 16, 3)
            copy2d(y + 4, 24, b, 8, 8, 3)                               // starts 4 floats (16 bytes) in
        }
        let wantCat = try ref.floats(try ref.concat([try ref.tensor(a, shape: [3, 4]), try ref.tensor(b, shape: [3, 2])], axis: 1))
        #expect(mismatch(["c": cat], ["c": wantCat], .exact) == nil)

        let patch = k.fn("hp_patchify", (@convention(c) (CP, P, Int64, Int64, Int64, Int64, Int64, Int32, Int32) -> Void).self)
        let img = r.uniform(2 * 3 * 4 * 6)                             // (B,C,H,W) = (2,3,4,6), p = 2 → h = 2, w = 3
        for (order, code) in [(PatchOrder.channelFirst, Int32(0)), (.channelLast, 1)] {
            let tokens = out(img.count) { y in patch(img, y, 2, 3, 2, 3, 2, code, 0) }
            let wantT = try ref.floats(try ref.patchify(try ref.tensor(img, shape: [2, 3, 4, 6]), patch: 2, order: order))
            #expect(mismatch(["p": tokens], ["p": wantT], .exact) == nil, "\(order)")
            let back = out(img.count) { y in patch(tokens, y, 2, 3, 2, 3, 2, code, 1) }
            let wantB = try ref.floats(try ref.unpatchify(try ref.tensor(wantT, shape: [2, 6, 12]), patch: 2, channels: 3,
                                                          height: 2, width: 3, order: order))
            #expect(mismatch(["u": back], ["u": wantB], .exact) == nil, "\(order)")
        }
    }

    @Test("broadcast add/mul, modulate, gated residual, RoPE and their backwards", .enabled(if: hostCXX != nil))
    func elementwise() throws {
        let k = try kernels()
        var r = Inputs(9)
        let (b, l, dd) = (2, 5, 7), n = b * l * dd
        let x = r.uniform(n), g = r.uniform(n), sh = r.uniform(b * dd), sc = r.uniform(b * dd)
        let tx = try ref.tensor(x, shape: [b, l, dd]), tg = try ref.tensor(g, shape: [b, l, dd])
        let tsh = try ref.tensor(sh, shape: [b, dd]), tsc = try ref.tensor(sc, shape: [b, dd])

        let binary = k.fn("hp_binary", (@convention(c) (Int32, CP, CP, P, Int64, UnsafePointer<Int64>) -> Void).self)
        for (bShape, op) in [([1, l, 1], Op.add), ([dd], .mul), ([b, 1, 1], .add), ([], .mul)] {
            let bv = r.uniform(bShape.reduce(1, *))
            let strides = try OpChecks.broadcast(op, [b, l, dd], bShape)
            let dims = CUDABackend.dims([b, l, dd], strides).map(Int64.init)
            let got = out(n) { y in binary(op == .add ? 0 : 1, x, bv, y, Int64(n), dims) }
            let tb = try ref.tensor(bv, shape: bShape)
            let want = try ref.floats(op == .add ? try ref.add(tx, tb) : try ref.mul(tx, tb))
            #expect(mismatch(["y": got], ["y": want], .elementwise) == nil, "\(op) \(bShape)")
        }

        let modulate = k.fn("hp_modulate", (@convention(c) (CP, CP, CP, P, Int64, Int64, Int64) -> Void).self)
        #expect(mismatch(["y": out(n) { modulate(x, sh, sc, $0, 2, 5, 7) }],
                         ["y": try ref.floats(try ref.modulate(tx, shift: tsh, scale: tsc))], .elementwise) == nil)

        let mdx = k.fn("hp_modulate_backward_dx", (@convention(c) (CP, CP, P, Int64, Int64, Int64) -> Void).self)
        let sums = k.fn("hp_column_sums", (@convention(c) (CP, CP?, P?, P?, Int64, Int64, Int64) -> Void).self)
        let mb = try ref.modulateBackward(tg, tx, scale: tsc)
        var s1 = [Float](repeating: 0, count: b * dd), s2 = s1
        s1.withUnsafeMutableBufferPointer { p1 in s2.withUnsafeMutableBufferPointer { p2 in sums(g, x, p1.baseAddress, p2.baseAddress, 2, 5, 7) } }
        #expect(mismatch(["dx": out(n) { mdx(g, sc, $0, 2, 5, 7) }, "dshift": s1, "dscale": s2],
                         ["dx": try ref.floats(mb.dx), "dshift": try ref.floats(mb.dshift), "dscale": try ref.floats(mb.dscale)],
                         .rowwise) == nil)

        let gate = k.fn("hp_gate_residual", (@convention(c) (CP, CP, CP, P, Int64, Int64, Int64) -> Void).self)
        let gateDy = k.fn("hp_gate_residual_backward_dy", (@convention(c) (CP, CP, P, Int64, Int64, Int64) -> Void).self)
        #expect(mismatch(["o": out(n) { gate(g, sh, x, $0, 2, 5, 7) }],
                         ["o": try ref.floats(try ref.gateResidual(tg, gate: tsh, tx))], .elementwise) == nil)
        let gb = try ref.gateResidualBackward(tg, gate: tsh, tx)
        var dgate = [Float](repeating: 0, count: b * dd)
        dgate.withUnsafeMutableBufferPointer { sums(g, x, nil, $0.baseAddress, 2, 5, 7) }
        #expect(mismatch(["dy": out(n) { gateDy(g, sh, $0, 2, 5, 7) }, "dgate": dgate],
                         ["dy": try ref.floats(gb.dy), "dgate": try ref.floats(gb.dgate)], .rowwise) == nil)

        let rope = k.fn("hp_rope", (@convention(c) (CP, CP, CP, P, Int64, Int64, Int64, Int32) -> Void).self)
        let ang = r.uniform(l * 3, -3, 3)                              // D = 6 → 3 pairs per position
        let xr = r.uniform(2 * l * 6), c = ang.map { cos($0) }, s = ang.map { sin($0) }
        for inv in [false, true] {
            let want = try ref.floats(try ref.rope(try ref.tensor(xr, shape: [2, l, 6]), cos: try ref.tensor(c, shape: [l, 3]),
                                                   sin: try ref.tensor(s, shape: [l, 3]), inverse: inv))
            #expect(mismatch(["y": out(xr.count) { rope(xr, c, s, $0, 2, Int64(l), 6, inv ? 1 : 0) }], ["y": want], .elementwise) == nil)
        }
    }

    @Test("GELU, SiLU, their backwards, scale, axpy and the MSE gradient", .enabled(if: hostCXX != nil))
    func maps() throws {
        let k = try kernels()
        var r = Inputs(1)
        let n = 257, x = r.uniform(n, -6, 6), g = r.uniform(n), tx = try ref.tensor(x, shape: [n]), tg = try ref.tensor(g, shape: [n])
        typealias Map = @convention(c) (CP, P, Int64) -> Void
        typealias Map2 = @convention(c) (CP, CP, P, Int64) -> Void
        #expect(mismatch(["y": out(n) { k.fn("hp_gelu", Map.self)(x, $0, Int64(n)) }], ["y": try ref.floats(try ref.gelu(tx))], .elementwise) == nil)
        #expect(mismatch(["y": out(n) { k.fn("hp_silu", Map.self)(x, $0, Int64(n)) }], ["y": try ref.floats(try ref.silu(tx))], .elementwise) == nil)
        #expect(mismatch(["y": out(n) { k.fn("hp_gelu_backward", Map2.self)(g, x, $0, Int64(n)) }],
                         ["y": try ref.floats(try ref.geluBackward(tg, tx))], .elementwise) == nil)
        #expect(mismatch(["y": out(n) { k.fn("hp_silu_backward", Map2.self)(g, x, $0, Int64(n)) }],
                         ["y": try ref.floats(try ref.siluBackward(tg, tx))], .elementwise) == nil)
        let scale = k.fn("hp_scale", (@convention(c) (CP, Float, P, Int64) -> Void).self)
        #expect(mismatch(["y": out(n) { scale(x, -0.37, $0, Int64(n)) }], ["y": try ref.floats(try ref.scale(tx, -0.37))], .elementwise) == nil)
        let axpy = k.fn("hp_axpy", (@convention(c) (P, Float, CP, Int64) -> Void).self)
        var y = g
        y.withUnsafeMutableBufferPointer { axpy($0.baseAddress!, 0.25, x, Int64(n)) }
        let ty = try ref.tensor(g, shape: [n])
        try ref.axpy(ty, alpha: 0.25, tx)
        #expect(mismatch(["y": y], ["y": try ref.floats(ty)], .elementwise) == nil)
        let diff = k.fn("hp_scaled_diff", (@convention(c) (CP, CP, Double, P, Int64) -> Void).self)
        #expect(mismatch(["d": out(n) { diff(x, g, 2 * 1.5 / Double(n), $0, Int64(n)) }],
                         ["d": try ref.floats(try ref.mseBackward(tx, tg, dloss: 1.5))], .elementwise) == nil)
    }
}
