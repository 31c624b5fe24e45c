// Building blocks shared by the SD3 and FLUX transformers, each written once over `any Backend`:
// timestep sinusoids, embedding MLPs, AdaLN modulation, joint attention with optional q/k RMSNorm and RoPE.
//
// Dimension legend: B batch, L sequence (Li image tokens, Lt text tokens), D inner width, H heads,
// Dh head width (D = H·Dh), J joint_attention_dim, P pooled_projection_dim.

import Foundation
import TensorCore

/// diffusers `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)`: [cos(t·f), sin(t·f)] with
/// f_k = exp(−ln(10000)·k/half), computed in f32 as torch does. t (B) → (B, channels) row-major.
public func timestepSinusoid(_ t: [Float], channels: Int = 256) -> [Float] {
    let half = channels / 2
    let logMax = Float(-Foundation.log(10000.0))
    let freqs: [Float] = (0..<half).map { k in Foundation.exp(logMax * Float(k) / Float(half)) }
    var out = [Float](repeating: 0, count: t.count * channels)
    for (b, tb) in t.enumerated() {
        for k in 0..<half {
            let a = tb * freqs[k]
            out[b * channels + k] = Foundation.cos(a)
            out[b * channels + half + k] = Foundation.sin(a)
        }
    }
    return out
}

/// FLUX 3-axis RoPE tables from position ids (diffusers `FluxPosEmbed`): ids (L,3) → cos, sin (L, Dh/2) f32.
///
/// Axis a rotates its `axes[a]/2` pairs by pos·θ^(−2k/axes[a]), computed in float64 and rounded to f32.
public func fluxRopeTables(ids: [Float], length: Int, axes: [Int], theta: Double = 10000) -> (cos: [Float], sin: [Float]) {
    let half = axes.reduce(0, +) / 2
    var c = [Float](repeating: 0, count: length * half), s = c
    for l in 0..<length {
        var k0 = 0
        for (a, dim) in axes.enumerated() {
            let pos = Double(ids[l * axes.count + a])
            for k in 0..<(dim / 2) {
                let omega = 1.0 / Foundation.pow(theta, Double(2 * k) / Double(dim))
                let angle = pos * omega
                c[l * half + k0 + k] = Float(Foundation.cos(angle))
                s[l * half + k0 + k] = Float(Foundation.sin(angle))
            }
            k0 += dim / 2
        }
    }
    return (c, s)
}

/// diffusers `TimestepEmbedding` / `PixArtAlphaTextProjection(act_fn="silu")`: linear_2(SiLU(linear_1(x))).
/// x (B,K) → (B,D).
func embeddingMLP(_ g: Tape, _ prefix: String, _ x: Var) throws -> Var {
    try linear(g, prefix + ".linear_2", try linear(g, prefix + ".linear_1", x, activation: .silu))
}

/// The Linear layer `prefix` (weight (N,K), optional bias (N)) on x (…,K) → (…,N).
/// A 4-bit packed weight runs through the W4A16 kernel (`Tape.linear(_:packed:…)`); in a store prepared for
/// inference a dense weight runs from the backend's GEMM layout (`Tape.linear(_:prepared:…)`).
///
/// `bf16Output`: in bf16 compute with a prepared weight, return the result in bf16 (rounded once in the GEMM) when it
/// only feeds another Linear, which would cast it to bf16 anyway — the same bits, one pass less.
func linear(_ g: Tape, _ prefix: String, _ x: Var, activation: Activation = .none, bf16Output: Bool = false) throws -> Var {
    let name = prefix + ".weight"
    if g.weights.isPacked(name), case .packed(let w) = try g.weights.linearWeight(name) {
        return try g.linear(x, packed: w, name: name, try g.optionalParam(prefix + ".bias"), activation: activation)
    }
    if g.weights.preparesLinearWeights, let w = try g.weights.preparedLinearWeight(name) {
        return try g.linear(x, prepared: w, name: name, try g.optionalParam(prefix + ".bias"), activation: activation,
                            output: bf16Output && w.dtype == .bf16 ? .bf16 : .f32)
    }
    return try g.linear(x, try g.param(name), try g.optionalParam(prefix + ".bias"), activation: activation)
}

/// x + gate·y, or x + y when the gate is absent (a removed norm sets gates to 1).
/// x, y (B,L,D); gate (B,D).
func residual(_ g: Tape, _ x: Var, gate: Var?, _ y: Var) throws -> Var {
    if let gate { return try g.gateResidual(x, gate: gate, y) }
    return try g.add(x, y)
}

/// LN(x)·(1+scale)+shift, or LN(x) when the modulation is absent. ln (B,L,D); shift, scale (B,D).
func modulatedNorm(_ g: Tape, _ ln: Var, shift: Var?, scale: Var?) throws -> Var {
    guard let shift, let scale else { return ln }
    return try g.modulate(ln, shift: shift, scale: scale)
}

/// AdaLN parameters: Linear(SiLU(temb)) chunked `count` ways. siluTemb (B,D) → count × (B,D).
func adaLN(_ g: Tape, _ prefix: String, siluTemb: Var, count: Int) throws -> [Var] {
    try g.chunk(try linear(g, prefix, siluTemb), count, axis: 1)                          // (B, count·D) → count × (B,D)
}

/// diffusers `FeedForward(dim, activation_fn="gelu-tanh")`: net.2(GELU_tanh(net.0.proj(x))). x (B,L,D).
func feedForward(_ g: Tape, _ prefix: String, _ x: Var) throws -> Var {
    let h = try linear(g, prefix + ".net.0.proj", x, activation: .geluTanh, bf16Output: true)   // (B,L,4D)
    return try linear(g, prefix + ".net.2", h)                                          // (B,L,D)
}

/// One stream's q, k, v in head layout. x (B,L,D) → three (B,H,L,Dh) f32 tensors.
///
/// `q`, `k`, `v` are Linear prefixes; `normQ`/`normK` optional RMSNorm (eps 1e-6) scale names over Dh.
func projectQKV(_ g: Tape, _ x: Var, heads: Int,
                q: String, k: String, v: String, normQ: String?, normK: String?) throws -> (Var, Var, Var) {
    let b = x.shape[0], l = x.shape[1], d = x.shape[2], dh = d / heads
    // bf16 inference: cast x once for the three projections (each Linear would cast it again); same bits.
    let xin = !g.recording && g.compute == .bf16 && x.value.dtype == .f32 ? g.constant(try g.be.cast(x.value, to: .bf16)) : x
    func one(_ name: String, _ norm: String?) throws -> Var {
        var y = g.reshape(try linear(g, name, xin), [b, l, heads, dh])                   // (B,L,H,Dh)
        if let norm { y = try g.rmsNorm(y, weight: try g.param(norm)) }
        return try g.transpose(y, [0, 2, 1, 3])                                           // (B,H,L,Dh)
    }
    return (try one(q, normQ), try one(k, normK), try one(v, nil))
}

/// RoPE tables on the backend: cos, sin (L, Dh/2).
struct RopeTables {
    var cos: Tensor
    var sin: Tensor
}
