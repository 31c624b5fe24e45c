// The backend protocol: a few allocator/transfer functions plus one method per `Op`.
// Every op method has a default that throws `BackendError.unsupported`, so a backend implements only what it can.
//
// Dimension legend for the shape comments in this file:
//   B batch, L sequence (Lq queries, Lk keys), H heads, D model / head width, C channels, N rows, K/M/N GEMM sizes.
// Unless stated otherwise ops take and return f32, contiguous row-major tensors.

/// A place tensors live and ops run: the scalar reference, the CPU (C kernels), CUDA, …
///
/// Forward and backward ops come in llm.c-style pairs; a backward returns the gradients of the forward's inputs:
///
///     let (y, mean, rstd) = try be.layerNorm(x, eps: 1e-6)        // y, x: (B,L,D); mean, rstd: (B,L)
///     let dx = try be.layerNormBackward(dy, x, mean: mean, rstd: rstd)
public protocol Backend: AnyObject, Sendable {
    /// Short lower-case identifier: "reference", "cpu", "cuda".
    var name: String { get }
    /// Name used in messages ("op X has no CUDA implementation").
    var displayName: String { get }
    /// The device whose storage this backend computes on.
    var device: Device { get }
    /// The ops this backend implements; every other op throws `BackendError.unsupported`.
    var supportedOps: Set<Op> { get }

    // ── allocation and transfer ───────────────────────────────────────────────────────────────
    /// A zero-filled tensor.
    func zeros(_ shape: [Int], dtype: DType) throws -> Tensor
    /// A tensor from f32 values, converted to `dtype` (f32, bf16/f16 round-to-nearest-even, i8/u8 rounded+clamped).
    func tensor(_ values: [Float], shape: [Int], dtype: DType) throws -> Tensor
    /// A tensor holding exactly these bytes (any dtype, including packed 4-bit).
    func tensor(bytes: [UInt8], shape: [Int], dtype: DType) throws -> Tensor
    /// The elements converted to f32 (not for 4-bit dtypes).
    func floats(_ x: Tensor) throws -> [Float]
    /// The raw bytes.
    func bytes(_ x: Tensor) throws -> [UInt8]
    /// The same tensor on this backend's device (returned unchanged when it already is).
    func transfer(_ x: Tensor) throws -> Tensor

    // ── layout ────────────────────────────────────────────────────────────────────────────
    /// Converts between f32, bf16 and f16 (round-to-nearest-even, NaN stays NaN); same dtype copies.
    func cast(_ x: Tensor, to dtype: DType) throws -> Tensor
    /// out.shape[i] = x.shape[perm[i]]; any dtype of 8+ bits.
    func transpose(_ x: Tensor, _ perm: [Int]) throws -> Tensor
    /// Joins tensors along `axis`; all other axes equal.
    func concat(_ xs: [Tensor], axis: Int) throws -> Tensor
    /// `length` elements from `start` along `axis` (a copy).
    func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor
    /// (B,C,H,W) → (B, (H/p)·(W/p), C·p·p); tokens in row-major (h, w) order.
    func patchify(_ x: Tensor, patch: Int, order: PatchOrder) throws -> Tensor
    /// (B, h·w, C·p·p) → (B, C, h·p, w·p); the inverse of `patchify` with the same order.
    func unpatchify(_ x: Tensor, patch: Int, channels: Int, height: Int, width: Int,
                    order: PatchOrder) throws -> Tensor

    // ── elementwise ─────────────────────────────────────────────────────────────────────────
    /// a + b, with b broadcast onto a's shape (numpy rules for b only: right-aligned axes equal or 1), e.g.
    /// bias (N) onto (…,N), position table (L,D) onto (B,L,D), per-batch σ (B,1,1,1) onto (B,C,H,W).
    /// The gradient of b is `reduce(toShape:)` of the output gradient.
    func add(_ a: Tensor, _ b: Tensor) throws -> Tensor
    /// a · b, with b broadcast as in `add`.
    func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor
    /// s · x.
    func scale(_ x: Tensor, _ s: Float) throws -> Tensor
    /// y += alpha · x, in place (gradient accumulation); y and x have equal shapes.
    func axpy(_ y: Tensor, alpha: Float, _ x: Tensor) throws
    /// GELU, tanh approximation.
    func gelu(_ x: Tensor) throws -> Tensor
    /// dx = dy · gelu'(x).
    func geluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor
    /// x · sigmoid(x).
    func silu(_ x: Tensor) throws -> Tensor
    /// dx = dy · silu'(x).
    func siluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor
    /// AdaLN modulate: x (B,L,D), shift, scale (B,D) → x·(1+scale) + shift.
    func modulate(_ x: Tensor, shift: Tensor, scale: Tensor) throws -> Tensor
    /// Gradients of `modulate`: dx (B,L,D), dshift, dscale (B,D).
    func modulateBackward(_ dy: Tensor, _ x: Tensor, scale: Tensor) throws
        -> (dx: Tensor, dshift: Tensor, dscale: Tensor)
    /// residual (B,L,D) + gate (B,D) · y (B,L,D).
    func gateResidual(_ residual: Tensor, gate: Tensor, _ y: Tensor) throws -> Tensor
    /// Gradients of `gateResidual` other than d residual (which is `dout` itself): dy (B,L,D), dgate (B,D).
    func gateResidualBackward(_ dout: Tensor, gate: Tensor, _ y: Tensor) throws -> (dy: Tensor, dgate: Tensor)
    /// Rotary embedding on interleaved pairs: x (…,L,D), cos/sin (L,D/2);
    /// (x[2k], x[2k+1]) → (x0·cos − x1·sin, x0·sin + x1·cos). `inverse` rotates by −θ (the backward).
    func rope(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) throws -> Tensor

    // ── row-wise ────────────────────────────────────────────────────────────────────────────
    /// LayerNorm over the last axis, no affine: x (…,D) → y (…,D), mean and rstd (…) for the backward.
    func layerNorm(_ x: Tensor, eps: Float) throws -> (y: Tensor, mean: Tensor, rstd: Tensor)
    func layerNormBackward(_ dy: Tensor, _ x: Tensor, mean: Tensor, rstd: Tensor) throws -> Tensor
    /// RMSNorm over the last axis with fp32 variance: y = x · rsqrt(mean(x²) + eps) · weight (D) (weight optional).
    func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> (y: Tensor, rstd: Tensor)
    /// Gradients of `rmsNorm`: dx (…,D) and, when a weight was given, dweight (D).
    func rmsNormBackward(_ dy: Tensor, _ x: Tensor, weight: Tensor?, rstd: Tensor) throws
        -> (dx: Tensor, dweight: Tensor?)
    /// Softmax over the last axis.
    func softmax(_ x: Tensor) throws -> Tensor
    /// dx = y · (dy − Σ dy·y), from the softmax output y.
    func softmaxBackward(_ dy: Tensor, _ y: Tensor) throws -> Tensor

    // ── reductions ──────────────────────────────────────────────────────────────────────────
    /// Sum over `axes` (removed from the shape; all axes gives shape ()).
    func sum(_ x: Tensor, axes: [Int]) throws -> Tensor
    /// Mean over `axes`.
    func mean(_ x: Tensor, axes: [Int]) throws -> Tensor
    /// mean((a − b)²) over all elements, shape ().
    func mse(_ a: Tensor, _ b: Tensor) throws -> Tensor
    /// d a = dloss · 2(a − b)/n (and d b = −d a).
    func mseBackward(_ a: Tensor, _ b: Tensor, dloss: Float) throws -> Tensor

    // ── contractions ────────────────────────────────────────────────────────────────────────
    /// out (…,M,N) f32 = act(op(a) · op(b) + bias). a: (…,M,K) or (…,K,M) when `transposeA`;
    /// b: (K,N), or (N,K) when `transposeB` (a Linear weight), optionally with a's batch axes.
    /// a and b: both f32 or both bf16 (f32 accumulation); bias (N) f32.
    func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?,
                activation: Activation) throws -> Tensor
    /// A Linear weight (N,K) f32/bf16 in this backend's GEMM layout, for `linear(_:prepared:…)` (inference only).
    /// The default keeps the dense tensor; the CPU backend packs it into its GEMM panels once.
    func prepareLinearWeight(_ weight: Tensor) throws -> PreparedLinearWeight
    /// `linear` with a prepared weight: x (…,K) → (…,N) = act(x·Wᵀ + bias) in `output` (f32, or bf16 rounded once
    /// — the same bits as casting the f32 result); an f32 x meets a bf16 weight as bf16.
    func linear(_ x: Tensor, prepared weight: PreparedLinearWeight, bias: Tensor?, activation: Activation,
                output: DType) throws -> Tensor
    /// x (…,K) f32/bf16 times a 4-bit weight (N,K) transposed → (…,N) f32 = act(x·Wᵀ + bias), dequantised on the fly.
    func matmulW4A16(_ x: Tensor, _ w: Packed4BitWeight, bias: Tensor?, activation: Activation) throws -> Tensor
    /// Fused softmax(q·kᵀ·scale)·v: q (B,H,Lq,D), k, v (B,H,Lk,D) (all f32 or all bf16) → out (B,H,Lq,D) in q's
    /// dtype and the row log-sum-exp lse (B,H,Lq) f32 (natural log of Σ exp(scaled scores)) for the backward.
    func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float) throws -> (out: Tensor, lse: Tensor)
    /// Gradients of `attention` (all f32): dq (B,H,Lq,D), dk, dv (B,H,Lk,D).
    func attentionBackward(_ dout: Tensor, _ q: Tensor, _ k: Tensor, _ v: Tensor, out: Tensor, lse: Tensor,
                           scale: Float) throws -> (dq: Tensor, dk: Tensor, dv: Tensor)

    // ── optimizer ───────────────────────────────────────────────────────────────────────────
    /// One AdamW step in place on param, m, v (all f32, equal shapes); `step` counts from 1.
    func adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: Int, config: AdamWConfig) throws
    /// Scales every gradient in place by min(1, maxNorm / (norm + 1e-6)) where norm is their global L2 norm
    /// (as torch.nn.utils.clip_grad_norm_); returns the norm before clipping.
    func clipGradNorm(_ grads: [Tensor], maxNorm: Float) throws -> Float

    // ── random ──────────────────────────────────────────────────────────────────────────────
    /// Standard-normal f32 noise: element i is `Philox.normal(seed: seed, index: offset + i)` (see Philox.swift).
    func randomNormal(_ shape: [Int], seed: UInt64, offset: UInt64) throws -> Tensor
}

extension Backend {
    /// Whether `op` runs on this backend.
    public func supports(_ op: Op) -> Bool { supportedOps.contains(op) }

    /// A tensor from f32 values (f32 dtype).
    public func tensor(_ values: [Float], shape: [Int]) throws -> Tensor {
        try tensor(values, shape: shape, dtype: .f32)
    }

    /// The gradient of `rope`: `rope` with the inverse rotation.
    public func ropeBackward(_ dy: Tensor, cos: Tensor, sin: Tensor) throws -> Tensor {
        try rope(dy, cos: cos, sin: sin, inverse: true)
    }

    /// `rope` forward.
    public func rope(_ x: Tensor, cos: Tensor, sin: Tensor) throws -> Tensor {
        try rope(x, cos: cos, sin: sin, inverse: false)
    }

    /// Linear layer y = x·Wᵀ + b: x (…,K), weight (N,K) as torch.nn.Linear, bias (N) f32 → (…,N) f32.
    /// With a bf16 weight an f32 x is cast to bf16 first (bf16 compute, f32 accumulation, as torch autocast).
    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, activation: Activation = .none) throws -> Tensor {
        let xc = weight.dtype == .bf16 && x.dtype == .f32 ? try cast(x, to: .bf16) : x
        return try matmul(xc, weight, transposeA: false, transposeB: true, bias: bias, activation: activation)
    }

    /// Gradients of `linear` without activation: dx (…,K), dweight (N,K), dbias (N), all f32.
    /// A bf16 weight (frozen, e.g. teacher or PWP-frozen student layers) gives dx through a bf16 GEMM; dweight is
    /// then still computed in f32 from x and dy.
    public func linearBackward(_ dy: Tensor, _ x: Tensor, weight: Tensor, hasBias: Bool) throws
        -> (dx: Tensor, dweight: Tensor, dbias: Tensor?) {
        let k = x.lastDim, n = dy.lastDim
        let dy2 = dy.reshaped([-1, n]), x2 = try x.dtype == .f32 ? x.reshaped([-1, k]) : cast(x, to: .f32).reshaped([-1, k])
        let dyw = weight.dtype == .bf16 && dy2.dtype == .f32 ? try cast(dy2, to: .bf16) : dy2
        let dx = try matmul(dyw, weight, transposeA: false, transposeB: false, bias: nil, activation: .none)
        let dw = try matmul(dy2, x2, transposeA: true, transposeB: false, bias: nil, activation: .none)
        let db = hasBias ? try sum(dy2, axes: [0]) : nil
        return (dx.reshaped(x.shape), dw, db)
    }

    /// Sums `grad` (shaped like a broadcast result) down to `shape`: the gradient of the broadcast operand of
    /// `add` (for `mul`, reduce grad·a). Returns `grad` itself when the shapes are equal.
    public func reduce(_ grad: Tensor, toShape shape: [Int]) throws -> Tensor {
        if grad.shape == shape { return grad }
        _ = try OpChecks.broadcast(.sum, grad.shape, shape)
        let lead = grad.rank - shape.count
        let axes = grad.shape.indices.filter { $0 < lead || shape[$0 - lead] == 1 }
        return try sum(grad, axes: axes).reshaped(shape)
    }

    /// Conv2d with kernel = stride = `patch` (the patch embedding), as patchify + GEMM:
    /// x (B,C,H,W), weight (D,C,p,p) as torch.nn.Conv2d, bias (D) → tokens (B, (H/p)·(W/p), D) in row-major (h, w).
    public func patchEmbed(_ x: Tensor, weight: Tensor, bias: Tensor?, patch: Int) throws -> Tensor {
        let tokens = try patchify(x, patch: patch, order: .channelFirst)                 // (B, hw, C·p·p)
        return try linear(tokens, weight: weight.reshaped([weight.shape.first ?? 0, -1]), bias: bias)
    }

    /// Gradients of `patchEmbed`: dx (B,C,H,W), dweight (D,C,p,p), dbias (D).
    public func patchEmbedBackward(_ dy: Tensor, _ x: Tensor, weight: Tensor, patch: Int, hasBias: Bool) throws
        -> (dx: Tensor, dweight: Tensor, dbias: Tensor?) {
        let tokens = try patchify(x, patch: patch, order: .channelFirst)
        let g = try linearBackward(dy, tokens, weight: weight.reshaped([weight.shape.first ?? 0, -1]), hasBias: hasBias)
        let dx = try unpatchify(g.dx, patch: patch, channels: x.shape[1], height: x.shape[2] / patch,
                                width: x.shape[3] / patch, order: .channelFirst)
        return (dx, g.dweight.reshaped(weight.shape), g.dbias)
    }

    /// Splits `x` along `axis` into pieces of the given sizes (the backward of `concat`).
    public func split(_ x: Tensor, axis: Int, sizes: [Int]) throws -> [Tensor] {
        var start = 0
        return try sizes.map { n in
            defer { start += n }
            return try slice(x, axis: axis, start: start, length: n)
        }
    }

    /// Splits `x` along `axis` into `count` equal chunks (torch.chunk with an exact split).
    public func chunk(_ x: Tensor, _ count: Int, axis: Int) throws -> [Tensor] {
        let a = axis < 0 ? axis + x.rank : axis
        guard a >= 0, a < x.rank, count > 0, x.shape[a] % count == 0 else {
            throw BackendError.invalidArgument(.slice, "cannot chunk \(x.shape.shapeString) into \(count) along axis \(axis)")
        }
        return try split(x, axis: a, sizes: Array(repeating: x.shape[a] / count, count: count))
    }
}

extension Backend {
    public func cast(_ x: Tensor, to dtype: DType) throws -> Tensor { throw BackendError.unsupported(.cast, backend: displayName) }
    public func transpose(_ x: Tensor, _ perm: [Int]) throws -> Tensor { throw BackendError.unsupported(.transpose, backend: displayName) }
    public func concat(_ xs: [Tensor], axis: Int) throws -> Tensor { throw BackendError.unsupported(.concat, backend: displayName) }
    public func slice(_ x: Tensor, axis: Int, start: Int, length: Int) throws -> Tensor { throw BackendError.unsupported(.slice, backend: displayName) }
    public func patchify(_ x: Tensor, patch: Int, order: PatchOrder) throws -> Tensor { throw BackendError.unsupported(.patchify, backend: displayName) }
    public func unpatchify(_ x: Tensor, patch: Int, channels: Int, height: Int, width: Int, order: PatchOrder) throws -> Tensor { throw BackendError.unsupported(.unpatchify, backend: displayName) }
    public func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { throw BackendError.unsupported(.add, backend: displayName) }
    public func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor { throw BackendError.unsupported(.mul, backend: displayName) }
    public func scale(_ x: Tensor, _ s: Float) throws -> Tensor { throw BackendError.unsupported(.scale, backend: displayName) }
    public func axpy(_ y: Tensor, alpha: Float, _ x: Tensor) throws { throw BackendError.unsupported(.axpy, backend: displayName) }
    public func gelu(_ x: Tensor) throws -> Tensor { throw BackendError.unsupported(.gelu, backend: displayName) }
    public func geluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor { throw BackendError.unsupported(.geluBackward, backend: displayName) }
    public func silu(_ x: Tensor) throws -> Tensor { throw BackendError.unsupported(.silu, backend: displayName) }
    public func siluBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor { throw BackendError.unsupported(.siluBackward, backend: displayName) }
    public func modulate(_ x: Tensor, shift: Tensor, scale: Tensor) throws -> Tensor { throw BackendError.unsupported(.modulate, backend: displayName) }
    public func modulateBackward(_ dy: Tensor, _ x: Tensor, scale: Tensor) throws -> (dx: Tensor, dshift: Tensor, dscale: Tensor) { throw BackendError.unsupported(.modulateBackward, backend: displayName) }
    public func gateResidual(_ residual: Tensor, gate: Tensor, _ y: Tensor) throws -> Tensor { throw BackendError.unsupported(.gateResidual, backend: displayName) }
    public func gateResidualBackward(_ dout: Tensor, gate: Tensor, _ y: Tensor) throws -> (dy: Tensor, dgate: Tensor) { throw BackendError.unsupported(.gateResidualBackward, backend: displayName) }
    public func rope(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) throws -> Tensor { throw BackendError.unsupported(.rope, backend: displayName) }
    public func layerNorm(_ x: Tensor, eps: Float) throws -> (y: Tensor, mean: Tensor, rstd: Tensor) { throw BackendError.unsupported(.layerNorm, backend: displayName) }
    public func layerNormBackward(_ dy: Tensor, _ x: Tensor, mean: Tensor, rstd: Tensor) throws -> Tensor { throw BackendError.unsupported(.layerNormBackward, backend: displayName) }
    public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Float) throws -> (y: Tensor, rstd: Tensor) { throw BackendError.unsupported(.rmsNorm, backend: displayName) }
    public func rmsNormBackward(_ dy: Tensor, _ x: Tensor, weight: Tensor?, rstd: Tensor) throws -> (dx: Tensor, dweight: Tensor?) { throw BackendError.unsupported(.rmsNormBackward, backend: displayName) }
    public func softmax(_ x: Tensor) throws -> Tensor { throw BackendError.unsupported(.softmax, backend: displayName) }
    public func softmaxBackward(_ dy: Tensor, _ y: Tensor) throws -> Tensor { throw BackendError.unsupported(.softmaxBackward, backend: displayName) }
    public func sum(_ x: Tensor, axes: [Int]) throws -> Tensor { throw BackendError.unsupported(.sum, backend: displayName) }
    public func mean(_ x: Tensor, axes: [Int]) throws -> Tensor { throw BackendError.unsupported(.mean, backend: displayName) }
    public func mse(_ a: Tensor, _ b: Tensor) throws -> Tensor { throw BackendError.unsupported(.mse, backend: displayName) }
    public func mseBackward(_ a: Tensor, _ b: Tensor, dloss: Float) throws -> Tensor { throw BackendError.unsupported(.mseBackward, backend: displayName) }
    public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, bias: Tensor?, activation: Activation) throws -> Tensor { throw BackendError.unsupported(.matmul, backend: displayName) }
    public func matmulW4A16(_ x: Tensor, _ w: Packed4BitWeight, bias: Tensor?, activation: Activation) throws -> Tensor { throw BackendError.unsupported(.matmulW4A16, backend: displayName) }

    /// Keeps the dense weight (checked: (N,K), f32 or bf16).
    public func prepareLinearWeight(_ weight: Tensor) throws -> PreparedLinearWeight {
        try OpChecks.preparedWeight(weight)
        return PreparedLinearWeight(shape: weight.shape, dtype: weight.dtype, backendName: name, dense: weight)
    }

    /// `linear` on the kept dense weight (then cast when `output` is bf16).
    public func linear(_ x: Tensor, prepared weight: PreparedLinearWeight, bias: Tensor?, activation: Activation,
                       output: DType) throws -> Tensor {
        try linearOnKeptDense(x, prepared: weight, bias: bias, activation: activation, output: output)
    }

    /// `linear(_:prepared:…)` on the weight's kept dense tensor: the protocol default, and what a backend does
    /// with a weight it did not pack itself. Throws when another backend prepared it or no dense tensor is kept.
    public func linearOnKeptDense(_ x: Tensor, prepared weight: PreparedLinearWeight, bias: Tensor?, activation: Activation,
                                  output: DType) throws -> Tensor {
        guard weight.backendName == name, let dense = weight.dense else {
            throw BackendError.invalidArgument(.linearPrepared, "the weight was prepared by the \(weight.backendName) backend, not \(name); prepare it on this backend")
        }
        return try linear(x, weight: dense, bias: bias, activation: activation, output: output)
    }

    /// `linear` with its f32 result cast to `output` (f32 or bf16).
    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, activation: Activation, output: DType) throws -> Tensor {
        guard output == .f32 || output == .bf16 else { throw BackendError.unsupportedDType(.linearPrepared, output, backend: displayName) }
        let y = try linear(x, weight: weight, bias: bias, activation: activation)
        return output == .f32 ? y : try cast(y, to: output)
    }

    /// `linear(_:prepared:bias:activation:output:)` with an f32 output.
    public func linear(_ x: Tensor, prepared weight: PreparedLinearWeight, bias: Tensor?, activation: Activation = .none) throws -> Tensor {
        try linear(x, prepared: weight, bias: bias, activation: activation, output: .f32)
    }
    public func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, scale: Float) throws -> (out: Tensor, lse: Tensor) { throw BackendError.unsupported(.attention, backend: displayName) }
    public func attentionBackward(_ dout: Tensor, _ q: Tensor, _ k: Tensor, _ v: Tensor, out: Tensor, lse: Tensor, scale: Float) throws -> (dq: Tensor, dk: Tensor, dv: Tensor) { throw BackendError.unsupported(.attentionBackward, backend: displayName) }
    public func adamw(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: Int, config: AdamWConfig) throws { throw BackendError.unsupported(.adamw, backend: displayName) }
    public func clipGradNorm(_ grads: [Tensor], maxNorm: Float) throws -> Float { throw BackendError.unsupported(.clipGradNorm, backend: displayName) }
    public func randomNormal(_ shape: [Int], seed: UInt64, offset: UInt64) throws -> Tensor { throw BackendError.unsupported(.randomNormal, backend: displayName) }
}
