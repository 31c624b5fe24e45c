// The CPU backend: every op through the C kernels of CPUKernels (hp_elementwise.h, hp_gemm_api.h).
// Swift here only checks arguments (OpChecks, shared with every backend), allocates outputs and calls C.
//
// Legend: B batch, L sequence, H heads, D width, K/M/N GEMM sizes, R rows.
import CPUKernels
import TensorCore
#if canImport(Glibc)
import Glibc
#endif

/// Runs every op with the C kernels (runtime-dispatched SIMD once the fast kernels land), multi-threaded,
/// with results independent of the thread count.
///
///     let cpu = CPUBackend()
///     let y = try cpu.linear(x, weight: w, bias: b, activation: .geluTanh)
public final class CPUBackend: HostBackend, @unchecked Sendable {
    /// Which kernel family computes the ops that have a scalar twin (GELU, SiLU, norms, softmax, AdamW).
    public enum Kernels: String, Sendable {
        /// The fast kernels (the default).
        case fast
        /// The plain scalar `_ref` twins (f64 accumulation, libm), for testing the fast ones.
        case scalarTwins
    }

    /// Which ISA kernel family runs the GEMM / attention / W4A16 kernels: the automatic choice, or a forced one
    /// (for tests and benchmarks; `HPRUNE_ISA` sets the process-wide choice instead).
    public enum Family: String, Sendable, CaseIterable {
        case auto, scalar, avx2, avx512
        case avx512BF16 = "avx512_bf16"
        /// AMX-BF16 tiles; opt-in, never timed on AMX hardware.
        case amx
        /// The AMX code path on emulated tiles (a scalar model of the instructions), on any CPU. Slow; for tests.
        case amxEmu = "amx_emu"

        /// The C kernels' id of this family.
        var isa: hp_isa {
            for i in 1..<HP_ISA_COUNT.rawValue where String(cString: hp_isa_name(hp_isa(i))) == rawValue { return hp_isa(i) }
            return HP_ISA_AUTO
        }
        /// Whether this CPU can run the family.
        public var isSupported: Bool { self == .auto || hp_isa_supported(isa) != 0 }
    }

    public let name = "cpu"
    public let displayName = "CPU"
    public let supportedOps = Set(Op.allCases)
    public let kernels: Kernels
    public let family: Family

    public init(kernels: Kernels = .fast, family: Family = .auto) {
        self.kernels = kernels
        self.family = family
    }

    /// Runs `body` with this backend's kernel family forced on the calling thread (restoring the previous choice).
    private func onFamily<T>(_ op: Op, _ body: () throws -> T) throws -> T {
        guard family != .auto else { return try body() }
        let previous = hp_get_isa_override()
        guard hp_set_isa_override(family.isa) == Int32(HP_OK) else {
            throw BackendError.invalidArgument(op, "the \(family.rawValue) CPU kernel family cannot run on this CPU "
                + "(features: \(CPUBackend.cpuFeatures.joined(separator: " "))); use the default family")
        }
        defer { _ = hp_set_isa_override(previous) }
        return try body()
    }

    /// Sets the number of threads every CPU kernel uses (process-wide; `nil` or ≤ 0 = all cores).
    public static func setThreadCount(_ n: Int?) { _ = hp_threads_init(Int32(n ?? 0)) }
    /// The number of threads kernels use now.
    public static var threadCount: Int { Int(hp_threads_count()) }
    /// ISA features of this CPU the kernels can use.
    public static var cpuFeatures: [String] {
        String(cString: hp_cpu_features_string()).split(separator: " ").map(String.init)
    }

    // MARK: helpers

    private func ro(_ x: Tensor, _ op: Op) throws -> UnsafePointer<Float> { UnsafePointer(try f32(x, op)) }
    private func u16(_ x: Tensor, _ op: Op) throws -> UnsafeMutablePointer<UInt16> {
        try host(x, op).assumingMemoryBound(to: UInt16.self)
    }

    private func act(_ a: Activation) -> hp_act {
        switch a {
        case .none: HP_ACT_NONE
        case .geluTanh: HP_ACT_GELU_TANH
        case .silu: HP_ACT_SILU
        }
    }

    /// Turns a kernel's status code into an error naming the op.
    private func check(_ status: Int32, _ op: Op) throws {
        switch status {
        case Int32(HP_OK): return
        case Int32(HP_ENOMEM): throw BackendError.outOfMemory(bytes: 0)
        case Int32(HP_EUNSUPPORTED): throw BackendError.invalidArgument(op, "the CPU kernel does not support these arguments")
        default: throw BackendError.invalidArgument(op, "the CPU kernel rejected its arguments (status \(status))")
        }
    }

    // MARK: layout

    public func cast(_ x: Tensor, to dtype: DType) throws -> Tensor {
        let n = x.count
        let src = try host(x, .cast)
        switch (x.dtype, dtype) {
        case (let a, let b) where a == b:
            guard a.bitsPerElement >= 8 else { throw BackendError.unsupportedDType(.cast, a, backend: displayName) }
            let out = try uninitialized(x.shape, dtype: dtype)
            out.hostPointer!.copyMemory(from: src, byteCount: x.byteCount)
            return out
        case (.f32, .bf16):
            let out = try uninitialized(x.shape, dtype: .bf16)
            hp_convert_f32_to_bf16(src.assumingMemoryBound(to: Float.self), try u16(out, .cast), Int64(n))
            return out
        case (.f32, .f16):
            let out = try uninitialized(x.shape, dtype: .f16)
            hp_convert_f32_to_f16(src.assumingMemoryBound(to: Float.self), try u16(out, .cast), Int64(n))
            return out
        case (.bf16, .f32):
            let (out, p) = try newF32(x.shape, zeroed: false)
            hp_convert_bf16_to_f32(src.assumingMemoryBound(to: UInt16.self), p, Int64(n))
            return out
        case (.f16, .f32):
            let (out, p) = try newF32(x.shape, zeroed: false)
            hp_convert_f16_to_f32(src.assumingMemoryBound(to: UInt16.self), p, Int64(n))
            return out
        case (.i8, .f32), (.u8, .f32):
            return try tensor(try floats(x), shape: x.shape, dtype: .f32)             // exact
        case (.bf16, .f16), (.f16, .bf16), (.i8, .bf16), (.u8, .bf16), (.i8, .f16), (.u8, .f16):
            return try cast(try cast(x, to: .f32), to: dtype)                      // exact first step, one rounding
        default:
            throw BackendError.unsupportedDType(.cast, x.dtype.isFloatingPoint ? dtype : x.dtype, backend: displayName)
        }
    }

    public func transpose(_ x: Tensor, _ perm: [Int]) throws -> Tensor {
        let shape = try OpChecks.transpose(x, perm)
        guard x.dtype.bitsPerElement >= 8 else { throw BackendError.unsupportedDType(.transpose, x.dtype, backend: displayName) }
        guard x.rank <= 8 else { throw BackendError.invalidArgument(.transpose, "rank \(x.rank) > 8 is not supported") }
        let out = try uninitialized(shape, dtype: x.dtype)
        if x.rank == 0 || x.count == 0 {
            out.hostPointer!.copyMemory(from: try host(x, .transpose), byteCount: x.byteCount)
            return out
        }
        let s = x.shape.map(Int64.init), p = perm.map(Int64.init)
        hp_permute(try host(x, .transpose), out.hostPointer!, Int64(x.dtype.bitsPerElement / 8), Int32(x.rank), s, p)
        return out
    }

    public func concat(_ xs: [Tensor], axis: Int) throws -> Tensor {
        let (shape, a) = try OpChecks.concat(xs, axis: axis)
        guard xs[0].dtype.bitsPerElement >= 8 else { throw BackendError.unsupportedDType(.concat, xs[0].dtype, backend: displayName) }
        let out = try uninitialized(shape, dtype: xs[0].dtype)
        let es = xs[0].dtype.bitsPerElement / 8
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *) * es
        let dst = out.hostPointer!
        var start = 0
        for x in xs {
            let src = try host(x, .concat), chunk = x.shape[a] * inner
            for o in 0..<outer {
                (dst + o * shape[a] * inner + start).copyMemory(from: src + o * chunk, byteCount: chunk)
            }
            start += chunk
        }
        return out
    }

    public func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor {
        let (shape, a) = try OpChecks.slice(x, axis: axis, start: start, length: length)
        guard x.dtype.bitsPerElement >= 8 else { throw BackendError.unsupportedDType(.slice, x.dtype, backend: displayName) }
        let out = try uninitialized(shape, dtype: x.dtype)
        let es = x.dtype.bitsPerElement / 8
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *) * es
        let src = try host(x, .slice), dst = out.hostPointer!
        for o in 0..<outer {
            (dst + o * length * inner).copyMemory(from: src + (o * x.shape[a] + start) * inner, byteCount: length * inner)
        }
        return out
    }

    public func patchify(_ x: Tensor, patch p: Int, order: PatchOrder) throws -> Tensor {
        let (b, c, h, w) = try OpChecks.patchify(x, patch: p)
        let (out, o) = try newF32([b, h * w, c * p * p], zeroed: false)
        hp_patchify_f32(try ro(x, .patchify), o, Int64(b), Int64(c), Int64(h), Int64(w), Int64(p), order == .channelFirst ? 0 : 1)
        return out
    }

    public func unpatchify(_ x: Tensor, patch p: Int, channels c: Int, height h: Int, width w: Int,
                           order: PatchOrder) throws -> Tensor {
        let b = try OpChecks.unpatchify(x, patch: p, channels: c, height: h, width: w)
        let (out, o) = try newF32([b, c, h * p, w * p], zeroed: false)
        hp_unpatchify_f32(try ro(x, .unpatchify), o, Int64(b), Int64(c), Int64(h), Int64(w), Int64(p), order == .channelFirst ? 0 : 1)
        return out
    }

    // MARK: elementwise

    /// add (op 0) or mul (op 1) with b broadcast onto a: a suffix b takes the repeat kernel, anything else the
    /// general strided one.
    private func binary(_ op: Op, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        let bStrides = try OpChecks.broadcast(op, a, b)
        let pa = try ro(a, op), pb = try ro(b, op)
        let (out, o) = try newF32(a.shape, zeroed: false)
        guard out.count > 0 else { return out }
        if OpChecks.isSuffix(a, b) {
            (op == .add ? hp_add_f32 : hp_mul_f32)(pa, pb, o, Int64(a.count), Int64(b.count))
        } else {
            guard a.rank <= 8 else { throw BackendError.invalidArgument(op, "broadcasting supports rank ≤ 8, got \(a.rank)") }
            hp_broadcast_binary_f32(op == .add ? 0 : 1, pa, pb, o, Int32(a.rank), a.shape.map(Int64.init),
                                    bStrides.map(Int64.init))
        }
        return out
    }

    public func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(.add, a, b) }
    public func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(.mul, a, b) }

    public func scale(_ x: Tensor, _ s: Float) throws -> Tensor {
        let p = try ro(x, .scale)
        let (out, o) = try newF32(x.shape, zeroed: false)
        hp_scale_f32(p, s, o, Int64(x.count))
        return out
    }

    public func axpy(_ y: Tensor, alpha: Float, _ x: Tensor) throws {
        try OpChecks.sameShape(.axpy, y, x)
        let px = try ro(x, .axpy)
        _ = try f32(y, .axpy)
        hp_axpy_f32(try hostWritable(y, .axpy).assumingMemoryBound(to: Float.self), alpha, px, Int64(x.count))
    }

    public func gelu(_ x: Tensor) throws -> Tensor {
        let p = try ro(x, .gelu)
        let (out, o) = try newF32(x.shape, zeroed: false)
        (kernels == .fast ? hp_gelu_f32 : hp_gelu_f32_ref)(p, o, Int64(x.count))
        return out
    }

    public func geluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor {
        try OpChecks.sameShape(.geluBackward, dy, x)
        let g = try ro(dy, .geluBackward), p = try ro(x, .geluBackward)
        let (out, o) = try newF32(x.shape, zeroed: false)
        (kernels == .fast ? hp_gelu_backward_f32 : hp_gelu_backward_f32_ref)(g, p, o, Int64(x.count))
        return out
    }

    public func silu(_ x: Tensor) throws -> Tensor {
        let p = try ro(x, .silu)
        let (out, o) = try newF32(x.shape, zeroed: false)
        (kernels == .fast ? hp_silu_f32 : hp_silu_f32_ref)(p, o, Int64(x.count))
        return out
    }

    public func siluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor {
        try OpChecks.sameShape(.siluBackward, dy, x)
        let g = try ro(dy, .siluBackward), p = try ro(x, .siluBackward)
        let (out, o) = try newF32(x.shape, zeroed: false)
        (kernels == .fast ? hp_silu_backward_f32 : hp_silu_backward_f32_ref)(g, p, o, Int64(x.count))
        return out
    }

    public func modulate(_ x: Tensor, shift: Tensor, scale: Tensor) throws -> Tensor {
        let (b, l, d) = try OpChecks.perBatch(.modulate, x, [shift, scale])
        let px = try ro(x, .modulate), sh = try ro(shift, .modulate), sc = try ro(scale, .modulate)
        let (out, o) = try newF32(x.shape, zeroed: false)
        hp_modulate_f32(px, sh, sc, o, Int64(b), Int64(l), Int64(d))
        return out
    }

    public func modulateBackward(_ dy: Tensor, _ x: Tensor, scale: Tensor) throws
        -> (dx: Tensor, dshift: Tensor, dscale: Tensor) {
        try OpChecks.sameShape(.modulateBackward, dy, x)
        let (b, l, d) = try OpChecks.perBatch(.modulateBackward, x, [scale])
        let g = try ro(dy, .modulateBackward), px = try ro(x, .modulateBackward), sc = try ro(scale, .modulateBackward)
        let (dx, pdx) = try newF32(x.shape, zeroed: false), (dsh, psh) = try newF32([b, d], zeroed: false), (dsc, psc) = try newF32([b, d], zeroed: false)
        hp_modulate_backward_f32(g, px, sc, pdx, psh, psc, Int64(b), Int64(l), Int64(d))
        return (dx, dsh, dsc)
    }

    public func gateResidual(_ residual: Tensor, gate: Tensor, _ y: Tensor) throws -> Tensor {
        try OpChecks.sameShape(.gateResidual, residual, y)
        let (b, l, d) = try OpChecks.perBatch(.gateResidual, residual, [gate])
        let r = try ro(residual, .gateResidual), g = try ro(gate, .gateResidual), py = try ro(y, .gateResidual)
        let (out, o) = try newF32(residual.shape, zeroed: false)
        hp_gate_residual_f32(r, g, py, o, Int64(b), Int64(l), Int64(d))
        return out
    }

    public func gateResidualBackward(_ dout: Tensor, gate: Tensor, _ y: Tensor) throws -> (dy: Tensor, dgate: Tensor) {
        try OpChecks.sameShape(.gateResidualBackward, dout, y)
        let (b, l, d) = try OpChecks.perBatch(.gateResidualBackward, y, [gate])
        let g = try ro(dout, .gateResidualBackward), pg = try ro(gate, .gateResidualBackward)
        let py = try ro(y, .gateResidualBackward)
        let (dy, pdy) = try newF32(y.shape, zeroed: false), (dg, pdg) = try newF32([b, d], zeroed: false)
        hp_gate_residual_backward_f32(g, pg, py, pdy, pdg, Int64(b), Int64(l), Int64(d))
        return (dy, dg)
    }

    public func rope(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) throws -> Tensor {
        let (outer, l, d) = try OpChecks.rope(x, cos: cos, sin: sin)
        let px = try ro(x, .rope), pc = try ro(cos, .rope), ps = try ro(sin, .rope)
        let (out, o) = try newF32(x.shape, zeroed: false)
        hp_rope_f32(px, pc, ps, o, Int64(outer), Int64(l), Int64(d), inverse ? 1 : 0)
        return out
    }

    // MARK: row-wise

    public func layerNorm(_ x: Tensor, eps: Float) throws -> (y: Tensor, mean: Tensor, rstd: Tensor) {
        let px = try ro(x, .layerNorm)
        let stats = Array(x.shape.dropLast())
        let (y, py) = try newF32(x.shape, zeroed: false), (m, pm) = try newF32(stats, zeroed: false), (r, pr) = try newF32(stats, zeroed: false)
        let f = kernels == .fast ? hp_layernorm_f32 : hp_layernorm_f32_ref
        f(px, py, pm, pr, Int64(x.rowCount), Int64(x.lastDim), eps)
        return (y, m, r)
    }

    public func layerNormBackward(_ dy: Tensor, _ x: Tensor, mean: Tensor, rstd: Tensor) throws -> Tensor {
        try OpChecks.sameShape(.layerNormBackward, dy, x)
        try OpChecks.rowStats(.layerNormBackward, x, [mean, rstd])
        let g = try ro(dy, .layerNormBackward), px = try ro(x, .layerNormBackward)
        let pm = try ro(mean, .layerNormBackward), pr = try ro(rstd, .layerNormBackward)
        let (dx, pdx) = try newF32(x.shape, zeroed: false)
        let f = kernels == .fast ? hp_layernorm_backward_f32 : hp_layernorm_backward_f32_ref
        f(g, px, pm, pr, pdx, Int64(x.rowCount), Int64(x.lastDim))
        return dx
    }

    private func rmsWeight(_ op: Op, _ weight: Tensor?, _ d: Int) throws -> UnsafePointer<Float>? {
        guard let weight else { return nil }
        guard weight.shape == [d] else {
            throw BackendError.invalidArgument(op, "weight must be (\(d)), got \(weight.shape.shapeString)")
        }
        return try ro(weight, op)
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> (y: Tensor, rstd: Tensor) {
        let px = try ro(x, .rmsNorm), pw = try rmsWeight(.rmsNorm, weight, x.lastDim)
        let (y, py) = try newF32(x.shape, zeroed: false), (r, pr) = try newF32(Array(x.shape.dropLast()))
        let f = kernels == .fast ? hp_rmsnorm_f32 : hp_rmsnorm_f32_ref
        f(px, pw, py, pr, Int64(x.rowCount), Int64(x.lastDim), eps)
        return (y, r)
    }

    public func rmsNormBackward(_ dy: Tensor, _ x: Tensor, weight: Tensor?, rstd: Tensor) throws
        -> (dx: Tensor, dweight: Tensor?) {
        try OpChecks.sameShape(.rmsNormBackward, dy, x)
        try OpChecks.rowStats(.rmsNormBackward, x, [rstd])
        let g = try ro(dy, .rmsNormBackward), px = try ro(x, .rmsNormBackward), pr = try ro(rstd, .rmsNormBackward)
        let pw = try rmsWeight(.rmsNormBackward, weight, x.lastDim)
        let (dx, pdx) = try newF32(x.shape, zeroed: false)
        let dw = weight == nil ? nil : try newF32([x.lastDim], zeroed: false)
        let f = kernels == .fast ? hp_rmsnorm_backward_f32 : hp_rmsnorm_backward_f32_ref
        f(g, px, pw, pr, pdx, dw?.1, Int64(x.rowCount), Int64(x.lastDim))
        return (dx, dw?.0)
    }

    public func softmax(_ x: Tensor) throws -> Tensor {
        let px = try ro(x, .softmax)
        let (y, py) = try newF32(x.shape, zeroed: false)
        let f = kernels == .fast ? hp_softmax_f32 : hp_softmax_f32_ref
        f(px, py, Int64(x.rowCount), Int64(x.lastDim))
        return y
    }

    public func softmaxBackward(_ dy: Tensor, _ y: Tensor) throws -> Tensor {
        try OpChecks.sameShape(.softmaxBackward, dy, y)
        let g = try ro(dy, .softmaxBackward), py = try ro(y, .softmaxBackward)
        let (dx, pdx) = try newF32(y.shape, zeroed: false)
        hp_softmax_backward_f32(g, py, pdx, Int64(y.rowCount), Int64(y.lastDim))
        return dx
    }

    // MARK: reductions

    /// Sum over `axes`: axes that are not one contiguous run are first moved to the end with a transpose.
    private func reduce(_ op: Op, _ x: Tensor, axes: [Int]) throws -> (Tensor, Int) {
        let (ax, shape) = try OpChecks.reduction(op, x, axes: axes)
        _ = try ro(x, op)
        var src = x
        var lo = ax.first ?? 0, hi = (ax.last ?? -1) + 1
        if !ax.isEmpty, hi - lo != ax.count {                      // not contiguous: kept axes first, reduced last
            let keep = (0..<x.rank).filter { !ax.contains($0) }
            src = try transpose(x, keep + ax)
            lo = keep.count
            hi = x.rank
        }
        let outer = src.shape[..<lo].reduce(1, *), r = src.shape[lo..<hi].reduce(1, *)
        let inner = src.shape[hi...].reduce(1, *)
        let (out, o) = try newF32(shape, zeroed: false)
        if out.count > 0 { hp_sum_axis_f32(try ro(src, op), o, Int64(outer), Int64(r), Int64(inner)) }
        return (out, r)
    }

    public func sum(_ x: Tensor, axes: [Int]) throws -> Tensor { try reduce(.sum, x, axes: axes).0 }

    public func mean(_ x: Tensor, axes: [Int]) throws -> Tensor {
        let (s, n) = try reduce(.mean, x, axes: axes)
        let p = s.hostPointer!.assumingMemoryBound(to: Float.self)
        hp_scale_f32(p, 1 / Float(n), p, Int64(s.count))        // in place on our fresh output
        return s
    }

    public func mse(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try OpChecks.sameShape(.mse, a, b)
        let s = hp_sq_diff_sum_f32(try ro(a, .mse), try ro(b, .mse), Int64(a.count))
        return try tensor([Float(s / Double(max(a.count, 1)))], shape: [])
    }

    public func mseBackward(_ a: Tensor, _ b: Tensor, dloss: Float) throws -> Tensor {
        try OpChecks.sameShape(.mseBackward, a, b)
        let pa = try ro(a, .mseBackward), pb = try ro(b, .mseBackward)
        let (out, o) = try newF32(a.shape, zeroed: false)
        hp_scaled_diff_f32(pa, pb, Float(2 * Double(dloss) / Double(max(a.count, 1))), o, Int64(a.count))
        return out
    }

    // MARK: contractions

    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?,
                       activation: Activation) throws -> Tensor {
        try OpChecks.dtype(.matmul, a, [.f32, .bf16], backend: displayName)
        let s = try OpChecks.matmul(a, b, transposeA: transposeA, transposeB: transposeB, bias: bias)
        let pa = try host(a, .matmul), pb = try host(b, .matmul), pbias = try bias.map { try ro($0, .matmul) }
        let (out, o) = try newF32(s.outShape, zeroed: s.k == 0)
        guard out.count > 0 else { return out }
        let lda = transposeA ? s.m : s.k, ldb = transposeB ? s.k : s.n
        let sa = s.m * s.k, sb = s.bBatched ? s.k * s.n : 0, sc = s.m * s.n
        let ta: Int32 = transposeA ? 1 : 0, tb: Int32 = transposeB ? 1 : 0
        try onFamily(.matmul) {
        if a.dtype == .f32 {
            try check(hp_gemm_f32_batched(ta, tb, s.m, s.n, s.k, 1, pa.assumingMemoryBound(to: Float.self), lda, sa,
                                          pb.assumingMemoryBound(to: Float.self), ldb, sb, 0, o, s.n, sc, pbias,
                                          act(activation), s.batch), .matmul)
        } else {
            try check(hp_gemm_bf16_batched(ta, tb, s.m, s.n, s.k, 1, pa.assumingMemoryBound(to: UInt16.self), lda, sa,
                                           pb.assumingMemoryBound(to: UInt16.self), ldb, sb, 0, o, HP_F32, s.n, sc,
                                           pbias, act(activation), s.batch), .matmul)
        }
        }
        return out
    }

    /// Packs W (N,K) into the GEMM panels of the kernel this thread dispatches to; the dense W can then go.
    public func prepareLinearWeight(_ weight: Tensor) throws -> PreparedLinearWeight {
        try OpChecks.preparedWeight(weight)
        let n = weight.shape[0], k = weight.shape[1], dt: hp_dtype = weight.dtype == .f32 ? HP_F32 : HP_BF16
        let bytes = try onFamily(.linearPrepared) { hp_packed_weight_bytes(dt, n, k) }
        guard bytes > 0 else { throw BackendError.invalidArgument(.linearPrepared, "no panel layout for \(weight.shape.shapeString) \(weight.dtype)") }
        let panels = try HostStorage(byteCount: bytes, zeroed: false)
        var packed = hp_packed_weight()
        let pw = try host(weight, .linearPrepared)
        try onFamily(.linearPrepared) { try check(hp_pack_weight(dt, pw, n, k, panels.base, &packed), .linearPrepared) }
        return CPUPreparedWeight(shape: weight.shape, dtype: weight.dtype, panels: panels, packed: packed)
    }

    /// y = act(x·Wᵀ + bias) on the prepared panels; an f32 x meets a bf16 weight as bf16. A weight packed under
    /// another ISA (a test's override) is unpacked and run as a plain `linear`.
    public func linear(_ x: Tensor, prepared weight: PreparedLinearWeight, bias: Tensor?, activation: Activation,
                       output: DType) throws -> Tensor {
        guard output == .f32 || output == .bf16 else { throw BackendError.unsupportedDType(.linearPrepared, output, backend: displayName) }
        guard let w = weight as? CPUPreparedWeight else {
            return try linearOnKeptDense(x, prepared: weight, bias: bias, activation: activation, output: output)
        }
        let (rows, n, k) = try OpChecks.linearPrepared(x, weight, bias: bias)
        let xc = x.dtype == weight.dtype ? x : try cast(x, to: weight.dtype)
        let px = try host(xc, .linearPrepared), pbias = try bias.map { try ro($0, .linearPrepared) }
        let out = try uninitialized(Array(x.shape.dropLast()) + [n], dtype: output)
        guard out.count > 0 else { return out }
        var packed = w.packed
        let po = try host(out, .linearPrepared)
        let status = try onFamily(.linearPrepared) {
            hp_gemm_packed(rows, px, k, &packed, po, output == .f32 ? HP_F32 : HP_BF16, n, pbias, act(activation))
        }
        if status == Int32(HP_EUNSUPPORTED) {
            let dense = try uninitialized(weight.shape, dtype: weight.dtype)
            try check(hp_unpack_weight(&packed, try host(dense, .linearPrepared)), .linearPrepared)
            return try linear(xc, weight: dense, bias: bias, activation: activation, output: output)
        }
        try check(status, .linearPrepared)
        return out
    }

    public func matmulW4A16(_ x: Tensor, _ w: Packed4BitWeight, bias: Tensor?, activation: Activation) throws -> Tensor {
        try OpChecks.dtype(.matmulW4A16, x, [.f32, .bf16], backend: displayName)
        let (rows, n, k) = try OpChecks.matmulW4A16(x, w, bias: bias)
        let px = try host(x, .matmulW4A16)
        let packed = try host(w.packed, .matmulW4A16).assumingMemoryBound(to: UInt8.self)
        let scale = try ro(w.scale, .matmulW4A16), code = try ro(w.codebook, .matmulW4A16)
        let zero = try w.zero.map { try ro($0, .matmulW4A16) }
        let pbias = try bias.map { try ro($0, .matmulW4A16) }
        let (out, o) = try newF32(Array(x.shape.dropLast()) + [n])
        guard out.count > 0 else { return out }
        var weight = hp_q4_weight(data: packed, scale: scale, zero: zero, code: code, n: n, k: k, block: w.blockSize)
        try onFamily(.matmulW4A16) {
            try check(hp_gemm_w4a16(rows, px, x.dtype == .f32 ? HP_F32 : HP_BF16, k, &weight, pbias, act(activation),
                                    o, HP_F32, n), .matmulW4A16)
        }
        return out
    }

    /// Kernel arguments for contiguous (B,H,L,D) tensors (zero strides mean contiguous).
    private func attentionArgs(_ s: OpChecks.AttentionSizes, scale: Float, dtype: hp_dtype,
                               q: UnsafeRawPointer, k: UnsafeRawPointer, v: UnsafeRawPointer,
                               o: UnsafeMutableRawPointer, lse: UnsafeMutablePointer<Float>) -> hp_attn_args {
        var a = hp_attn_args()
        (a.B, a.H, a.Lq, a.Lk, a.D) = (s.b, s.h, s.lq, s.lk, s.d)
        a.scale = scale
        a.dtype = dtype
        (a.q, a.k, a.v, a.o, a.lse) = (q, k, v, o, lse)
        return a
    }

    public func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float) throws -> (out: Tensor, lse: Tensor) {
        try OpChecks.dtype(.attention, q, [.f32, .bf16], backend: displayName)
        let s = try OpChecks.attention(.attention, q, k, v)
        let pq = try host(q, .attention), pk = try host(k, .attention), pv = try host(v, .attention)
        let out = try uninitialized(q.shape, dtype: q.dtype), (lse, l) = try newF32([s.b, s.h, s.lq], zeroed: false)
        guard out.count > 0 else { return (out, lse) }
        var args = attentionArgs(s, scale: scale, dtype: q.dtype == .f32 ? HP_F32 : HP_BF16, q: pq, k: pk, v: pv,
                                 o: out.hostPointer!, lse: l)
        try onFamily(.attention) { try check(hp_attention_forward(&args), .attention) }
        return (out, lse)
    }

    public func attentionBackward(_ dout: Tensor, _ q: Tensor, _ k: Tensor, _ v: Tensor, out: Tensor, lse: Tensor,
                                  scale: Float) throws -> (dq: Tensor, dk: Tensor, dv: Tensor) {
        let s = try OpChecks.attention(.attentionBackward, q, k, v)
        try OpChecks.sameShape(.attentionBackward, dout, q, "dout and q")
        try OpChecks.sameShape(.attentionBackward, out, q, "out and q")
        guard lse.shape == [s.b, s.h, s.lq] else {
            throw BackendError.invalidArgument(.attentionBackward, "lse must be (B,H,Lq) = \([s.b, s.h, s.lq].shapeString), got \(lse.shape.shapeString)")
        }
        let g = try ro(dout, .attentionBackward), pq = try ro(q, .attentionBackward), pk = try ro(k, .attentionBackward)
        let pv = try ro(v, .attentionBackward), po = try ro(out, .attentionBackward), pl = try ro(lse, .attentionBackward)
        let (dq, pdq) = try newF32(q.shape, zeroed: false), (dk, pdk) = try newF32(k.shape, zeroed: false), (dv, pdv) = try newF32(v.shape, zeroed: false)
        guard q.count > 0 || k.count > 0 else { return (dq, dk, dv) }
        var args = attentionArgs(s, scale: scale, dtype: HP_F32, q: pq, k: pk, v: pv, o: UnsafeMutableRawPointer(mutating: po),
                                 lse: UnsafeMutablePointer(mutating: pl))
        (args.dout, args.dq, args.dk, args.dv) = (UnsafeRawPointer(g), UnsafeMutableRawPointer(pdq),
                                                  UnsafeMutableRawPointer(pdk), UnsafeMutableRawPointer(pdv))
        try onFamily(.attentionBackward) { try check(hp_attention_backward(&args), .attentionBackward) }
        return (dq, dk, dv)
    }

    // MARK: optimizer

    public func adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: Int, config c: AdamWConfig) throws {
        for t in [grad, m, v] { try OpChecks.sameShape(.adamw, param, t, "param, grad, m and v") }
        guard step >= 1 else { throw BackendError.invalidArgument(.adamw, "step counts from 1, got \(step)") }
        let pg = try ro(grad, .adamw)
        for t in [param, m, v] { _ = try f32(t, .adamw) }
        let pp = try hostWritable(param, .adamw).assumingMemoryBound(to: Float.self)
        let pm = try hostWritable(m, .adamw).assumingMemoryBound(to: Float.self)
        let pv = try hostWritable(v, .adamw).assumingMemoryBound(to: Float.self)
        let bc1 = Float(1 - pow(Double(c.beta1), Double(step))), bc2 = Float(1 - pow(Double(c.beta2), Double(step)))
        let f = kernels == .fast ? hp_adamw_f32 : hp_adamw_f32_ref
        f(pp, pg, pm, pv, Int64(param.count), c.learningRate, c.beta1, c.beta2, c.eps, c.weightDecay, bc1, bc2)
    }

    public func clipGradNorm(_ grads: [Tensor], maxNorm: Float) throws -> Float {
        var total = 0.0
        for g in grads { total += hp_sum_squares_f32(try ro(g, .clipGradNorm), Int64(g.count)) }
        let norm = total.squareRoot()
        let coef = Double(maxNorm) / (norm + 1e-6)
        if coef < 1 {
            for g in grads {
                let p = try hostWritable(g, .clipGradNorm).assumingMemoryBound(to: Float.self)
                hp_scale_f32(p, Float(coef), p, Int64(g.count))
            }
        }
        return Float(norm)
    }

    // MARK: random

    public func randomNormal(_ shape: [Int], seed: UInt64, offset: UInt64) throws -> Tensor {
        let (out, o) = try newF32(shape, zeroed: false)
        hp_randn_f32(o, Int64(out.count), seed, offset)
        return out
    }
}

/// A Linear weight packed into the CPU GEMM panels (`CPUBackend.prepareLinearWeight`); holds no dense copy.
final class CPUPreparedWeight: PreparedLinearWeight, @unchecked Sendable {
    let panels: HostStorage
    let packed: hp_packed_weight   // points into `panels`

    init(shape: [Int], dtype: DType, panels: HostStorage, packed: hp_packed_weight) {
        self.panels = panels
        self.packed = packed
        super.init(shape: shape, dtype: dtype, backendName: "cpu", dense: nil)
    }

    override var byteCount: Int { panels.byteCount }
}
