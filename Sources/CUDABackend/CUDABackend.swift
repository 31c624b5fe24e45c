// The CUDA backend: every op of `Op` as an NVRTC-compiled kernel (Kernels/*.swift) or cuBLASLt (CUDAMatmul.swift)
// on device memory. Arguments are checked with OpChecks (shared with every backend); host tensors passed in are
// uploaded for the call. Ops that failed the start-up self-check are not in `supportedOps` and throw.
//
// Legend: B batch, L sequence, H heads, D width, K/M/N GEMM sizes, R rows.
import BackendConformance
import Foundation
import TensorCore

/// Runs ops on one NVIDIA GPU (sm_80+).
///
///     let cuda = try CUDABackendProvider().make()          // opens GPU 0, runs the self-check once
///     let y = try cuda.linear(x, weight: w, bias: b, activation: .geluTanh)
public final class CUDABackend: Backend, @unchecked Sendable {
    public let name = "cuda"
    public let displayName = "CUDA"
    public var device: Device { .cuda(context.ordinal) }
    /// Every op minus those that failed the self-check (`failures`).
    public private(set) var supportedOps = Set(Op.allCases)
    /// Ops taken out by the self-check, with the first error each gave.
    public private(set) var failures: [Op: String] = [:]
    let context: CUDAContext
    private let host = ReferenceBackend()
    /// The GELU-epilogue probe's answer (`fusedGELU`), nil until the first GELU matmul.
    var geluDecided: Bool?
    let geluLock = NSLock()

    init(context: CUDAContext) { self.context = context }

    /// The GPU's name ("NVIDIA H200").
    public var deviceName: String { context.deviceName }

    /// Waits until every queued kernel has finished (for timing; results read back with `floats` wait anyway).
    public func synchronize() throws { try context.synchronize() }

    /// Removes the ops the self-check failed from `supportedOps`.
    func disable(_ failed: [Op: String]) {
        failures = failed
        supportedOps = Set(Op.allCases).subtracting(failed.keys)
    }

    /// Throws `unsupported` (with the self-check's error) for an op the self-check disabled.
    @inline(__always) private func enter(_ op: Op) throws {
        if let why = failures[op] {
            throw BackendError.invalidArgument(op, "disabled on this GPU by the start-up self-check: \(why)")
        }
    }

    // MARK: memory

    /// A fresh device tensor (contents undefined unless `zeroed`).
    func empty(_ shape: [Int], _ dtype: DType, zeroed: Bool = false) throws -> Tensor {
        let n = dtype.byteCount(for: shape.reduce(1, *))
        let s = try CUDAStorage(context: context, byteCount: n)
        if zeroed && n > 0 { try context.driver.check(context.driver.cuMemsetD8(s.pointer, 0, n), "cuMemsetD8") }
        return Tensor(storage: s, shape: shape, dtype: dtype)
    }

    /// `x` on this device (uploaded when it is a host tensor).
    public func transfer(_ x: Tensor) throws -> Tensor {
        if x.storage is CUDAStorage { return x }
        guard let p = x.hostPointer else { throw BackendError.wrongDevice(.cast, expected: device, got: x.device) }
        let t = try empty(x.shape, x.dtype)
        if x.byteCount > 0 {
            try context.makeCurrent()
            try context.driver.check(context.driver.cuMemcpyHtoD(ptr(t), p, x.byteCount), "cuMemcpyHtoD(\(x.byteCount) bytes)")
        }
        return t
    }

    /// Device address of a device tensor's first element.
    func ptr(_ x: Tensor) -> UInt64 { (x.storage as! CUDAStorage).pointer + UInt64(x.byteOffset) }

    /// Device address of `x`, uploading a host tensor (kept alive in `keep` until the op has synchronised).
    func dev(_ x: Tensor, _ keep: inout [Tensor]) throws -> UInt64 {
        if x.storage is CUDAStorage { return ptr(x) }
        let t = try transfer(x)
        keep.append(t)
        return ptr(t)
    }

    /// Like `dev` for f32 operands; checks the dtype first.
    func f32(_ x: Tensor, _ op: Op, _ keep: inout [Tensor]) throws -> UInt64 {
        try OpChecks.dtype(op, x, [.f32], backend: displayName)
        return try dev(x, &keep)
    }

    /// A device tensor an in-place op writes into.
    func writable(_ x: Tensor, _ op: Op) throws -> UInt64 {
        try OpChecks.dtype(op, x, [.f32], backend: displayName)
        guard x.storage is CUDAStorage else { throw BackendError.wrongDevice(op, expected: device, got: x.device) }
        return ptr(x)
    }

    /// Waits for the op's kernels when host tensors were uploaded for it (they are freed afterwards).
    func finish(_ keep: [Tensor]) throws { if !keep.isEmpty { try context.synchronize() } }

    public func zeros(_ shape: [Int], dtype: DType) throws -> Tensor { try empty(shape, dtype, zeroed: true) }

    public func tensor(_ values: [Float], shape: [Int], dtype: DType) throws -> Tensor {
        try transfer(try host.tensor(values, shape: shape, dtype: dtype))
    }

    public func tensor(bytes: [UInt8], shape: [Int], dtype: DType) throws -> Tensor {
        try transfer(try host.tensor(bytes: bytes, shape: shape, dtype: dtype))
    }

    /// Copies a tensor to host memory (synchronising with the device).
    func download(_ x: Tensor) throws -> Tensor {
        guard x.storage is CUDAStorage else { return x }
        let h = try host.zeros(x.shape, dtype: x.dtype)
        if x.byteCount > 0 {
            try context.makeCurrent()
            try context.driver.check(context.driver.cuMemcpyDtoH(h.hostPointer, ptr(x), x.byteCount),
                                     "cuMemcpyDtoH(\(x.byteCount) bytes)")
        }
        return h
    }

    public func floats(_ x: Tensor) throws -> [Float] { try host.floats(try download(x)) }
    public func bytes(_ x: Tensor) throws -> [UInt8] { try host.bytes(try download(x)) }

    // MARK: layout

    public func cast(_ x: Tensor, to dtype: DType) throws -> Tensor {
        try enter(.cast)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let src = try dev(x, &keep), n = x.count
        func run(_ k: String, _ out: DType) throws -> Tensor {
            let y = try empty(x.shape, out)
            if n > 0 { try context.launch(k, grid: (context.blocks(n), 1, 1), block: 256, [.ptr(src), .ptr(ptr(y)), .i64(n)]) }
            return y
        }
        switch (x.dtype, dtype) {
        case (let a, let b) where a == b:
            guard a.bitsPerElement >= 8 else { throw BackendError.unsupportedDType(.cast, a, backend: displayName) }
            let y = try empty(x.shape, dtype)
            if x.byteCount > 0 {
                try context.makeCurrent()
                try context.driver.check(context.driver.cuMemcpyDtoD(ptr(y), src, x.byteCount), "cuMemcpyDtoD")
            }
            return y
        case (.f32, .bf16): return try run("hp_cast_f32_bf16", .bf16)
        case (.f32, .f16): return try run("hp_cast_f32_f16", .f16)
        case (.bf16, .f32): return try run("hp_cast_bf16_f32", .f32)
        case (.f16, .f32): return try run("hp_cast_f16_f32", .f32)
        case (.i8, .f32): return try run("hp_cast_i8_f32", .f32)
        case (.u8, .f32): return try run("hp_cast_u8_f32", .f32)
        case (.bf16, .f16), (.f16, .bf16), (.i8, .bf16), (.u8, .bf16), (.i8, .f16), (.u8, .f16):
            return try cast(try cast(x, to: .f32), to: dtype)                        // exact first step, one rounding
        default:
            throw BackendError.unsupportedDType(.cast, x.dtype.isFloatingPoint ? dtype : x.dtype, backend: displayName)
        }
    }

    /// Dims for `permuted_index`: rank, output shape, input stride of each output axis.
    static func dims(_ outShape: [Int], _ strides: [Int]) -> [Int] {
        [outShape.count] + outShape + Array(repeating: 1, count: 8 - outShape.count)
            + strides + Array(repeating: 0, count: 8 - strides.count)
    }

    /// Dims of a permute: the output shape and, per output axis, the stride of the input axis it reads.
    static func permuteDims(_ shape: [Int], _ perm: [Int]) -> [Int] {
        var inStrides = Array(repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * shape[i + 1] }
        return dims(perm.map { shape[$0] }, perm.map { inStrides[$0] })
    }

    public func transpose(_ x: Tensor, _ perm: [Int]) throws -> Tensor {
        try enter(.transpose)
        let shape = try OpChecks.transpose(x, perm)
        let es = x.dtype.bitsPerElement / 8
        guard x.dtype.bitsPerElement >= 8, [1, 2, 4].contains(es) else {
            throw BackendError.unsupportedDType(.transpose, x.dtype, backend: displayName)
        }
        guard x.rank <= 8 else { throw BackendError.invalidArgument(.transpose, "rank \(x.rank) > 8 is not supported") }
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let src = try dev(x, &keep)
        let y = try empty(shape, x.dtype)
        guard x.count > 0 else { return y }
        let d = Self.permuteDims(x.shape, perm)
        try context.launch("hp_permute_\(es)", grid: (context.blocks(x.count), 1, 1), block: 256,
                           [.ptr(src), .ptr(ptr(y)), .i64(x.count), .dims(d)])
        return y
    }

    /// rows × width bytes between pitched buffers.
    private func copy2d(dst: UInt64, dstPitch: Int, src: UInt64, srcPitch: Int, width: Int, rows: Int) throws {
        guard width > 0, rows > 0 else { return }
        try context.launch("hp_copy2d", grid: (context.blocks(width * rows), 1, 1), block: 256,
                           [.ptr(dst), .i64(dstPitch), .ptr(src), .i64(srcPitch), .i64(width), .i64(rows)])
    }

    public func concat(_ xs: [Tensor], axis: Int) throws -> Tensor {
        try enter(.concat)
        let (shape, a) = try OpChecks.concat(xs, axis: axis)
        guard xs[0].dtype.bitsPerElement >= 8 else { throw BackendError.unsupportedDType(.concat, xs[0].dtype, backend: displayName) }
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let y = try empty(shape, xs[0].dtype)
        let es = xs[0].dtype.bitsPerElement / 8
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *) * es
        var start = 0
        for x in xs {
            let chunk = x.shape[a] * inner
            try copy2d(dst: ptr(y) + UInt64(start), dstPitch: shape[a] * inner, src: try dev(x, &keep), srcPitch: chunk,
                       width: chunk, rows: outer)
            start += chunk
        }
        return y
    }

    public func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor {
        try enter(.slice)
        let (shape, a) = try OpChecks.slice(x, axis: axis, start: start, length: length)
        guard x.dtype.bitsPerElement >= 8 else { throw BackendError.unsupportedDType(.slice, x.dtype, backend: displayName) }
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let y = try empty(shape, x.dtype)
        let es = x.dtype.bitsPerElement / 8
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *) * es
        try copy2d(dst: ptr(y), dstPitch: length * inner, src: try dev(x, &keep) + UInt64(start * inner),
                   srcPitch: x.shape[a] * inner, width: length * inner, rows: outer)
        return y
    }

    public func patchify(_ x: Tensor, patch p: Int, order: PatchOrder) throws -> Tensor {
        try enter(.patchify)
        let (b, c, h, w) = try OpChecks.patchify(x, patch: p)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let src = try f32(x, .patchify, &keep)
        let y = try empty([b, h * w, c * p * p], .f32)
        if x.count > 0 {
            try context.launch("hp_patchify", grid: (context.blocks(x.count), 1, 1), block: 256,
                               [.ptr(src), .ptr(ptr(y)), .i64(b), .i64(c), .i64(h), .i64(w), .i64(p),
                                .i32(order == .channelFirst ? 0 : 1), .i32(0)])
        }
        return y
    }

    public func unpatchify(_ x: Tensor, patch p: Int, channels c: Int, height h: Int, width w: Int,
                           order: PatchOrder) throws -> Tensor {
        try enter(.unpatchify)
        let b = try OpChecks.unpatchify(x, patch: p, channels: c, height: h, width: w)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let src = try f32(x, .unpatchify, &keep)
        let y = try empty([b, c, h * p, w * p], .f32)
        if y.count > 0 {
            try context.launch("hp_patchify", grid: (context.blocks(y.count), 1, 1), block: 256,
                               [.ptr(src), .ptr(ptr(y)), .i64(b), .i64(c), .i64(h), .i64(w), .i64(p),
                                .i32(order == .channelFirst ? 0 : 1), .i32(1)])
        }
        return y
    }

    // MARK: elementwise

    private func binary(_ op: Op, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        try enter(op)
        let bStrides = try OpChecks.broadcast(op, a, b)
        guard a.rank <= 8 else { throw BackendError.invalidArgument(op, "broadcasting supports rank ≤ 8, got \(a.rank)") }
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pa = try f32(a, op, &keep), pb = try f32(b, op, &keep)
        let y = try empty(a.shape, .f32)
        guard a.count > 0 else { return y }
        try context.launch("hp_binary", grid: (context.blocks(a.count), 1, 1), block: 256,
                           [.i32(op == .add ? 0 : 1), .ptr(pa), .ptr(pb), .ptr(ptr(y)), .i64(a.count),
                            .dims(Self.dims(a.shape, bStrides))])
        return y
    }

    public func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(.add, a, b) }
    public func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary(.mul, a, b) }

    /// A one-input f32 map kernel `k(x, y, n)`.
    private func map(_ op: Op, _ k: String, _ x: Tensor, extra: [KernelArg] = []) throws -> Tensor {
        try enter(op)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let px = try f32(x, op, &keep)
        let y = try empty(x.shape, .f32)
        if x.count > 0 {
            try context.launch(k, grid: (context.blocks(x.count), 1, 1), block: 256, [.ptr(px)] + extra + [.ptr(ptr(y)), .i64(x.count)])
        }
        return y
    }

    /// A two-input f32 map kernel `k(g, x, y, n)`.
    private func map2(_ op: Op, _ k: String, _ g: Tensor, _ x: Tensor) throws -> Tensor {
        try enter(op)
        try OpChecks.sameShape(op, g, x)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pg = try f32(g, op, &keep), px = try f32(x, op, &keep)
        let y = try empty(x.shape, .f32)
        if x.count > 0 {
            try context.launch(k, grid: (context.blocks(x.count), 1, 1), block: 256, [.ptr(pg), .ptr(px), .ptr(ptr(y)), .i64(x.count)])
        }
        return y
    }

    public func scale(_ x: Tensor, _ s: Float) throws -> Tensor { try map(.scale, "hp_scale", x, extra: [.f32(s)]) }

    public func axpy(_ y: Tensor, alpha: Float, _ x: Tensor) throws {
        try enter(.axpy)
        try OpChecks.sameShape(.axpy, y, x)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let px = try f32(x, .axpy, &keep), py = try writable(y, .axpy)
        if x.count > 0 {
            try context.launch("hp_axpy", grid: (context.blocks(x.count), 1, 1), block: 256, [.ptr(py), .f32(alpha), .ptr(px), .i64(x.count)])
        }
    }

    public func gelu(_ x: Tensor) throws -> Tensor { try map(.gelu, "hp_gelu", x) }
    public func geluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor { try map2(.geluBackward, "hp_gelu_backward", dy, x) }
    public func silu(_ x: Tensor) throws -> Tensor { try map(.silu, "hp_silu", x) }
    public func siluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor { try map2(.siluBackward, "hp_silu_backward", dy, x) }

    public func modulate(_ x: Tensor, shift: Tensor, scale: Tensor) throws -> Tensor {
        try enter(.modulate)
        let (b, l, d) = try OpChecks.perBatch(.modulate, x, [shift, scale])
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let px = try f32(x, .modulate, &keep), ps = try f32(shift, .modulate, &keep), pc = try f32(scale, .modulate, &keep)
        let y = try empty(x.shape, .f32)
        if x.count > 0 {
            try context.launch("hp_modulate", grid: (context.blocks(x.count), 1, 1), block: 256,
                               [.ptr(px), .ptr(ps), .ptr(pc), .ptr(ptr(y)), .i64(b), .i64(l), .i64(d)])
        }
        return y
    }

    /// s1 (B,D) = Σ_l g and s2 (B,D) = Σ_l g·x (when x is given).
    private func columnSums(_ g: UInt64, _ x: UInt64?, _ b: Int, _ l: Int, _ d: Int) throws -> (Tensor, Tensor?) {
        let s1 = try empty([b, d], .f32), s2 = x == nil ? nil : try empty([b, d], .f32)
        if b * d > 0 {
            try context.launch("hp_column_sums", grid: (context.blocks(b * d), 1, 1), block: 256,
                               [.ptr(g), .ptr(x ?? 0), .ptr(ptr(s1)), .ptr(s2.map(ptr) ?? 0), .i64(b), .i64(l), .i64(d)])
        }
        return (s1, s2)
    }

    public func modulateBackward(_ dy: Tensor, _ x: Tensor, scale: Tensor) throws
        -> (dx: Tensor, dshift: Tensor, dscale: Tensor) {
        try enter(.modulateBackward)
        try OpChecks.sameShape(.modulateBackward, dy, x)
        let (b, l, d) = try OpChecks.perBatch(.modulateBackward, x, [scale])
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pg = try f32(dy, .modulateBackward, &keep), px = try f32(x, .modulateBackward, &keep)
        let pc = try f32(scale, .modulateBackward, &keep)
        let dx = try empty(x.shape, .f32)
        if x.count > 0 {
            try context.launch("hp_modulate_backward_dx", grid: (context.blocks(x.count), 1, 1), block: 256,
                               [.ptr(pg), .ptr(pc), .ptr(ptr(dx)), .i64(b), .i64(l), .i64(d)])
        }
        let (dsh, dsc) = try columnSums(pg, px, b, l, d)
        return (dx, dsh, dsc!)
    }

    public func gateResidual(_ residual: Tensor, gate: Tensor, _ y: Tensor) throws -> Tensor {
        try enter(.gateResidual)
        try OpChecks.sameShape(.gateResidual, residual, y)
        let (b, l, d) = try OpChecks.perBatch(.gateResidual, residual, [gate])
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pr = try f32(residual, .gateResidual, &keep), pg = try f32(gate, .gateResidual, &keep), py = try f32(y, .gateResidual, &keep)
        let out = try empty(residual.shape, .f32)
        if out.count > 0 {
            try context.launch("hp_gate_residual", grid: (context.blocks(out.count), 1, 1), block: 256,
                               [.ptr(pr), .ptr(pg), .ptr(py), .ptr(ptr(out)), .i64(b), .i64(l), .i64(d)])
        }
        return out
    }

    public func gateResidualBackward(_ dout: Tensor, gate: Tensor, _ y: Tensor) throws -> (dy: Tensor, dgate: Tensor) {
        try enter(.gateResidualBackward)
        try OpChecks.sameShape(.gateResidualBackward, dout, y)
        let (b, l, d) = try OpChecks.perBatch(.gateResidualBackward, y, [gate])
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pg = try f32(dout, .gateResidualBackward, &keep), pgate = try f32(gate, .gateResidualBackward, &keep)
        let py = try f32(y, .gateResidualBackward, &keep)
        let dy = try empty(y.shape, .f32)
        if y.count > 0 {
            try context.launch("hp_gate_residual_backward_dy", grid: (context.blocks(y.count), 1, 1), block: 256,
                               [.ptr(pg), .ptr(pgate), .ptr(ptr(dy)), .i64(b), .i64(l), .i64(d)])
        }
        let (_, dgate) = try columnSums(pg, py, b, l, d)           // dgate = Σ_l dout·y
        return (dy, dgate!)
    }

    public func rope(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) throws -> Tensor {
        try enter(.rope)
        let (outer, l, d) = try OpChecks.rope(x, cos: cos, sin: sin)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let px = try f32(x, .rope, &keep), pc = try f32(cos, .rope, &keep), ps = try f32(sin, .rope, &keep)
        let y = try empty(x.shape, .f32)
        let pairs = outer * l * (d / 2)
        if pairs > 0 {
            try context.launch("hp_rope", grid: (context.blocks(pairs), 1, 1), block: 256,
                               [.ptr(px), .ptr(pc), .ptr(ps), .ptr(ptr(y)), .i64(outer), .i64(l), .i64(d), .i32(inverse ? 1 : 0)])
        }
        return y
    }

    // MARK: row-wise

    /// One block per row, 256 threads (rows beyond the grid loop).
    private func rowGrid(_ rows: Int) -> (Int, Int, Int) { (max(1, min(rows, 65535)), 1, 1) }

    public func layerNorm(_ x: Tensor, eps: Float) throws -> (y: Tensor, mean: Tensor, rstd: Tensor) {
        try enter(.layerNorm)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let px = try f32(x, .layerNorm, &keep)
        let stats = Array(x.shape.dropLast())
        let y = try empty(x.shape, .f32), m = try empty(stats, .f32), r = try empty(stats, .f32)
        if x.rowCount > 0 && x.lastDim > 0 {
            try context.launch("hp_layernorm", grid: rowGrid(x.rowCount), block: 256,
                               [.ptr(px), .ptr(ptr(y)), .ptr(ptr(m)), .ptr(ptr(r)), .i64(x.rowCount), .i64(x.lastDim), .f32(eps)])
        }
        return (y, m, r)
    }

    public func layerNormBackward(_ dy: Tensor, _ x: Tensor, mean: Tensor, rstd: Tensor) throws -> Tensor {
        try enter(.layerNormBackward)
        try OpChecks.sameShape(.layerNormBackward, dy, x)
        try OpChecks.rowStats(.layerNormBackward, x, [mean, rstd])
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pg = try f32(dy, .layerNormBackward, &keep), px = try f32(x, .layerNormBackward, &keep)
        let pm = try f32(mean, .layerNormBackward, &keep), pr = try f32(rstd, .layerNormBackward, &keep)
        let dx = try empty(x.shape, .f32)
        if x.rowCount > 0 && x.lastDim > 0 {
            try context.launch("hp_layernorm_backward", grid: rowGrid(x.rowCount), block: 256,
                               [.ptr(pg), .ptr(px), .ptr(pm), .ptr(pr), .ptr(ptr(dx)), .i64(x.rowCount), .i64(x.lastDim)])
        }
        return dx
    }

    private func rmsWeight(_ op: Op, _ weight: Tensor?, _ d: Int, _ keep: inout [Tensor]) throws -> UInt64 {
        guard let weight else { return 0 }
        guard weight.shape == [d] else { throw BackendError.invalidArgument(op, "weight must be (\(d)), got \(weight.shape.shapeString)") }
        return try f32(weight, op, &keep)
    }

    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> (y: Tensor, rstd: Tensor) {
        try enter(.rmsNorm)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let px = try f32(x, .rmsNorm, &keep), pw = try rmsWeight(.rmsNorm, weight, x.lastDim, &keep)
        let y = try empty(x.shape, .f32), r = try empty(Array(x.shape.dropLast()), .f32, zeroed: true)
        if x.rowCount > 0 && x.lastDim > 0 {
            try context.launch("hp_rmsnorm", grid: rowGrid(x.rowCount), block: 256,
                               [.ptr(px), .ptr(pw), .ptr(ptr(y)), .ptr(ptr(r)), .i64(x.rowCount), .i64(x.lastDim), .f32(eps)])
        }
        return (y, r)
    }

    public func rmsNormBackward(_ dy: Tensor, _ x: Tensor, weight: Tensor?, rstd: Tensor) throws
        -> (dx: Tensor, dweight: Tensor?) {
        try enter(.rmsNormBackward)
        try OpChecks.sameShape(.rmsNormBackward, dy, x)
        try OpChecks.rowStats(.rmsNormBackward, x, [rstd])
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pg = try f32(dy, .rmsNormBackward, &keep), px = try f32(x, .rmsNormBackward, &keep)
        let pr = try f32(rstd, .rmsNormBackward, &keep), pw = try rmsWeight(.rmsNormBackward, weight, x.lastDim, &keep)
        let dx = try empty(x.shape, .f32)
        let dw = weight == nil ? nil : try empty([x.lastDim], .f32, zeroed: true)
        if x.rowCount > 0 && x.lastDim > 0 {
            try context.launch("hp_rmsnorm_backward", grid: rowGrid(x.rowCount), block: 256,
                               [.ptr(pg), .ptr(px), .ptr(pw), .ptr(pr), .ptr(ptr(dx)), .i64(x.rowCount), .i64(x.lastDim)])
            if let dw {
                try context.launch("hp_rmsnorm_dweight", grid: (context.blocks(x.lastDim), 1, 1), block: 256,
                                   [.ptr(pg), .ptr(px), .ptr(pr), .ptr(ptr(dw)), .i64(x.rowCount), .i64(x.lastDim)])
            }
        }
        return (dx, dw)
    }

    public func softmax(_ x: Tensor) throws -> Tensor {
        try enter(.softmax)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let px = try f32(x, .softmax, &keep)
        let y = try empty(x.shape, .f32)
        if x.rowCount > 0 && x.lastDim > 0 {
            try context.launch("hp_softmax", grid: rowGrid(x.rowCount), block: 256, [.ptr(px), .ptr(ptr(y)), .i64(x.rowCount), .i64(x.lastDim)])
        }
        return y
    }

    public func softmaxBackward(_ dy: Tensor, _ y: Tensor) throws -> Tensor {
        try enter(.softmaxBackward)
        try OpChecks.sameShape(.softmaxBackward, dy, y)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pg = try f32(dy, .softmaxBackward, &keep), py = try f32(y, .softmaxBackward, &keep)
        let dx = try empty(y.shape, .f32)
        if y.rowCount > 0 && y.lastDim > 0 {
            try context.launch("hp_softmax_backward", grid: rowGrid(y.rowCount), block: 256,
                               [.ptr(pg), .ptr(py), .ptr(ptr(dx)), .i64(y.rowCount), .i64(y.lastDim)])
        }
        return dx
    }

    // MARK: reductions

    /// Sum (divided by `divide` when mean) over `axes`; non-contiguous axis sets are first moved last.
    private func reduce(_ op: Op, _ x: Tensor, axes: [Int], mean: Bool) throws -> Tensor {
        try enter(op)
        let (ax, shape) = try OpChecks.reduction(op, x, axes: axes)
        try OpChecks.dtype(op, x, [.f32], backend: displayName)
        var src = try transfer(x)
        var lo = ax.first ?? 0, hi = (ax.last ?? -1) + 1
        if !ax.isEmpty, hi - lo != ax.count {
            let keepAxes = (0..<x.rank).filter { !ax.contains($0) }
            src = try transpose(src, keepAxes + ax)
            lo = keepAxes.count
            hi = x.rank
        }
        let outer = src.shape[..<lo].reduce(1, *), r = src.shape[lo..<hi].reduce(1, *), inner = src.shape[hi...].reduce(1, *)
        let y = try empty(shape, .f32, zeroed: true)
        if y.count > 0 && r > 0 {
            try context.launch("hp_sum_axis", grid: rowGrid(y.count), block: 256,
                               [.ptr(ptr(src)), .ptr(ptr(y)), .i64(outer), .i64(r), .i64(inner), .f64(mean ? Double(r) : 1)])
        }
        try context.synchronize()                                   // `src` may be a temporary upload or transpose
        return y
    }

    public func sum(_ x: Tensor, axes: [Int]) throws -> Tensor { try reduce(.sum, x, axes: axes, mean: false) }
    public func mean(_ x: Tensor, axes: [Int]) throws -> Tensor { try reduce(.mean, x, axes: axes, mean: true) }

    /// Σ (a − b)² (or Σ a² when b is nil) in f64: per-block partials, summed on the host in block order.
    private func squareSum(_ a: UInt64, _ b: UInt64?, _ n: Int) throws -> Double {
        guard n > 0 else { return 0 }
        let blocks = min(context.blocks(n), 1024)
        let partial = try empty([blocks * 2], .f32)                   // 8 bytes per block (double)
        try context.launch("hp_square_partials", grid: (blocks, 1, 1), block: 256, [.ptr(a), .ptr(b ?? 0), .ptr(ptr(partial)), .i64(n)])
        let bytes = try download(partial)
        let p = bytes.hostPointer!.assumingMemoryBound(to: Double.self)
        return (0..<blocks).reduce(0.0) { $0 + p[$1] }
    }

    public func mse(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try enter(.mse)
        try OpChecks.sameShape(.mse, a, b)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let s = try squareSum(try f32(a, .mse, &keep), try f32(b, .mse, &keep), a.count)
        return try tensor([Float(s / Double(max(a.count, 1)))], shape: [], dtype: .f32)
    }

    public func mseBackward(_ a: Tensor, _ b: Tensor, dloss: Float) throws -> Tensor {
        try enter(.mseBackward)
        try OpChecks.sameShape(.mseBackward, a, b)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pa = try f32(a, .mseBackward, &keep), pb = try f32(b, .mseBackward, &keep)
        let y = try empty(a.shape, .f32)
        if a.count > 0 {
            try context.launch("hp_scaled_diff", grid: (context.blocks(a.count), 1, 1), block: 256,
                               [.ptr(pa), .ptr(pb), .f64(2 * Double(dloss) / Double(max(a.count, 1))), .ptr(ptr(y)), .i64(a.count)])
        }
        return y
    }

    // MARK: contractions (matmul and linear in CUDAMatmul.swift)

    public func matmulW4A16(_ x: Tensor, _ w: Packed4BitWeight, bias: Tensor?, activation: Activation) throws -> Tensor {
        try enter(.matmulW4A16)
        try OpChecks.dtype(.matmulW4A16, x, [.f32, .bf16], backend: displayName)
        let (rows, n, k) = try OpChecks.matmulW4A16(x, w, bias: bias)
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let px = try dev(x, &keep), pw = try dev(w.packed, &keep), ps = try f32(w.scale, .matmulW4A16, &keep)
        let pz = try w.zero.map { try f32($0, .matmulW4A16, &keep) } ?? 0
        let pc = try f32(w.codebook, .matmulW4A16, &keep), pb = try bias.map { try f32($0, .matmulW4A16, &keep) } ?? 0
        let y = try empty(Array(x.shape.dropLast()) + [n], .f32, zeroed: true)
        guard rows > 0, n > 0 else { return y }
        let warps = 8
        try context.launch("hp_w4a16", grid: ((n + warps - 1) / warps, (rows + 7) / 8, 1), block: warps * 32,
                           [.ptr(px), .i32(x.dtype == .bf16 ? 1 : 0), .ptr(pw), .ptr(ps), .ptr(pz), .ptr(pc), .ptr(pb),
                            .i32(Self.actCode(activation)), .ptr(ptr(y)), .i64(rows), .i64(n), .i64(k), .i64(w.blockSize)])
        return y
    }

    /// The prelude's activation codes.
    static func actCode(_ a: Activation) -> Int32 {
        switch a {
        case .none: 0
        case .geluTanh: 1
        case .silu: 2
        }
    }

    /// Queries per block of the attention kernels (HP_AT_TILE) and the largest head width (HP_AT_MAXD).
    static let attentionTile = 64, attentionMaxD = 128

    public func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float) throws -> (out: Tensor, lse: Tensor) {
        try enter(.attention)
        try OpChecks.dtype(.attention, q, [.f32, .bf16], backend: displayName)
        let s = try OpChecks.attention(.attention, q, k, v)
        guard s.d <= Self.attentionMaxD else {
            throw BackendError.invalidArgument(.attention, "head width \(s.d) > \(Self.attentionMaxD) is not supported by the CUDA kernel")
        }
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pq = try dev(q, &keep), pk = try dev(k, &keep), pv = try dev(v, &keep)
        let out = try empty(q.shape, q.dtype, zeroed: true), lse = try empty([s.b, s.h, s.lq], .f32, zeroed: true)
        guard s.b * s.h * s.lq > 0, s.d > 0 else { return (out, lse) }
        let t = Self.attentionTile
        try context.launch("hp_attention_forward", grid: ((s.lq + t - 1) / t, s.b * s.h, 1), block: t, shared: 2 * t * s.d * 4,
                           [.ptr(pq), .ptr(pk), .ptr(pv), .ptr(ptr(out)), .ptr(ptr(lse)), .i64(s.lq), .i64(s.lk), .i64(s.d),
                            .f32(scale), .i32(q.dtype == .bf16 ? 1 : 0)])
        return (out, lse)
    }

    public func attentionBackward(_ dout: Tensor, _ q: Tensor, _ k: Tensor, _ v: Tensor, out: Tensor, lse: Tensor,
                                  scale: Float) throws -> (dq: Tensor, dk: Tensor, dv: Tensor) {
        try enter(.attentionBackward)
        let s = try OpChecks.attention(.attentionBackward, q, k, v)
        try OpChecks.sameShape(.attentionBackward, dout, q, "dout and q")
        try OpChecks.sameShape(.attentionBackward, out, q, "out and q")
        guard lse.shape == [s.b, s.h, s.lq] else {
            throw BackendError.invalidArgument(.attentionBackward, "lse must be (B,H,Lq) = \([s.b, s.h, s.lq].shapeString), got \(lse.shape.shapeString)")
        }
        guard s.d <= Self.attentionMaxD else {
            throw BackendError.invalidArgument(.attentionBackward, "head width \(s.d) > \(Self.attentionMaxD) is not supported by the CUDA kernel")
        }
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let op = Op.attentionBackward
        let pg = try f32(dout, op, &keep), pq = try f32(q, op, &keep), pk = try f32(k, op, &keep), pv = try f32(v, op, &keep)
        let po = try f32(out, op, &keep), pl = try f32(lse, op, &keep)
        let dq = try empty(q.shape, .f32, zeroed: true), dk = try empty(k.shape, .f32, zeroed: true), dv = try empty(v.shape, .f32, zeroed: true)
        let rows = s.b * s.h * s.lq
        guard s.d > 0, s.b * s.h > 0, s.lq > 0, s.lk > 0 else { return (dq, dk, dv) }
        let rowdot = try empty([rows], .f32)
        try context.launch("hp_attention_rowdot", grid: (context.blocks(rows), 1, 1), block: 256,
                           [.ptr(pg), .ptr(po), .ptr(ptr(rowdot)), .i64(rows), .i64(s.d)])
        let t = Self.attentionTile
        try context.launch("hp_attention_backward_kv", grid: ((s.lk + t - 1) / t, s.b * s.h, 1), block: t,
                           shared: (2 * t * s.d + 2 * t) * 4,
                           [.ptr(pg), .ptr(pq), .ptr(pk), .ptr(pv), .ptr(pl), .ptr(ptr(rowdot)), .ptr(ptr(dk)), .ptr(ptr(dv)),
                            .i64(s.lq), .i64(s.lk), .i64(s.d), .f32(scale)])
        try context.launch("hp_attention_backward_q", grid: ((s.lq + t - 1) / t, s.b * s.h, 1), block: t, shared: 2 * t * s.d * 4,
                           [.ptr(pg), .ptr(pq), .ptr(pk), .ptr(pv), .ptr(pl), .ptr(ptr(rowdot)), .ptr(ptr(dq)),
                            .i64(s.lq), .i64(s.lk), .i64(s.d), .f32(scale)])
        try context.synchronize()                                   // rowdot is freed on return
        return (dq, dk, dv)
    }

    // MARK: optimizer

    public func adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: Int, config c: AdamWConfig) throws {
        try enter(.adamw)
        for t in [grad, m, v] { try OpChecks.sameShape(.adamw, param, t, "param, grad, m and v") }
        guard step >= 1 else { throw BackendError.invalidArgument(.adamw, "step counts from 1, got \(step)") }
        var keep: [Tensor] = []
        defer { try? finish(keep) }
        let pg = try f32(grad, .adamw, &keep)
        let pp = try writable(param, .adamw), pm = try writable(m, .adamw), pv = try writable(v, .adamw)
        let b1 = Double(c.beta1), b2 = Double(c.beta2)
        let bc1 = 1 - pow(b1, Double(step)), bc2 = 1 - pow(b2, Double(step))
        guard param.count > 0 else { return }
        try context.launch("hp_adamw", grid: (context.blocks(param.count), 1, 1), block: 256,
                           [.ptr(pp), .ptr(pg), .ptr(pm), .ptr(pv), .i64(param.count), .f64(Double(c.learningRate)), .f64(b1),
                            .f64(b2), .f64(Double(c.eps)), .f64(Double(c.weightDecay)), .f64(bc1), .f64(bc2)])
    }

    public func clipGradNorm(_ grads: [Tensor], maxNorm: Float) throws -> Float {
        try enter(.clipGradNorm)
        var total = 0.0
        for g in grads { total += try squareSum(try writable(g, .clipGradNorm), nil, g.count) }
        let norm = total.squareRoot()
        let coef = Double(maxNorm) / (norm + 1e-6)
        if coef < 1 {
            for g in grads where g.count > 0 {
                let p = ptr(g)
                try context.launch("hp_scale", grid: (context.blocks(g.count), 1, 1), block: 256, [.ptr(p), .f32(Float(coef)), .ptr(p), .i64(g.count)])
            }
        }
        return Float(norm)
    }

    // MARK: random

    public func randomNormal(_ shape: [Int], seed: UInt64, offset: UInt64) throws -> Tensor {
        try enter(.randomNormal)
        let y = try empty(shape, .f32)
        if y.count > 0 {
            try context.launch("hp_randn", grid: (context.blocks(y.count), 1, 1), block: 256,
                               [.ptr(ptr(y)), .i64(y.count), .u64(seed), .u64(offset)])
        }
        return y
    }
}
