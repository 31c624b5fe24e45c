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
struct EmbeddingMLP {
    var linear1: Linear
    var linear2: Linear

    init(_ w: WeightStore, _ prefix: String) throws {
        linear1 = try w.linear(prefix + ".linear_1")
        linear2 = try w.linear(prefix + ".linear_2")
    }

    /// x (B,K) → (B,D).
    func callAsFunction(_ be: any Backend, _ x: Tensor) throws -> Tensor {
        try linear2(be, try linear1(be, x, activation: .silu))
    }
}

/// LayerNorm over the last axis, eps 1e-6, no affine (every norm in both families).
@inline(__always)
func layerNorm(_ be: any Backend, _ x: Tensor) throws -> Tensor {
    try be.layerNorm(x, eps: 1e-6).y
}

/// x + gate·y, or x + y when the gate is absent (a removed norm sets gates to 1).
/// x, y (B,L,D); gate (B,D).
func residual(_ be: any Backend, _ x: Tensor, gate: Tensor?, _ y: Tensor) throws -> Tensor {
    if let gate { return try be.gateResidual(x, gate: gate, y) }
    return try be.add(x, y)
}

/// LN(x)·(1+scale)+shift, or LN(x) when the modulation is absent. x (B,L,D); shift, scale (B,D).
func modulatedNorm(_ be: any Backend, _ ln: Tensor, shift: Tensor?, scale: Tensor?) throws -> Tensor {
    guard let shift, let scale else { return ln }
    return try be.modulate(ln, shift: shift, scale: scale)
}

/// AdaLN parameters: Linear(SiLU(temb)) chunked `count` ways. siluTemb (B,D) → count × (B,D).
func adaLN(_ be: any Backend, _ w: WeightStore, _ prefix: String, siluTemb: Tensor, count: Int) throws -> [Tensor] {
    let e = try w.linear(prefix)(be, siluTemb)                                            // (B, count·D)
    return try be.chunk(e, count, axis: 1)
}

/// diffusers `FeedForward(dim, activation_fn="gelu-tanh")`: net.2(GELU_tanh(net.0.proj(x))). x (B,L,D).
func feedForward(_ be: any Backend, _ w: WeightStore, _ prefix: String, _ x: Tensor) throws -> Tensor {
    let h = try w.linear(prefix + ".net.0.proj")(be, x, activation: .geluTanh)          // (B,L,4D)
    return try w.linear(prefix + ".net.2")(be, h)                                       // (B,L,D)
}

/// One stream's q, k, v in head layout. x (B,L,D) → three (B,H,L,Dh) f32 tensors.
///
/// `q`, `k`, `v` are Linear prefixes; `normQ`/`normK` optional RMSNorm (eps 1e-6) scale names over Dh.
func projectQKV(_ be: any Backend, _ w: WeightStore, _ x: Tensor, heads: Int,
                q: String, k: String, v: String, normQ: String?, normK: String?) throws -> (Tensor, Tensor, Tensor) {
    let b = x.shape[0], l = x.shape[1], d = x.shape[2], dh = d / heads
    func one(_ name: String, _ norm: String?) throws -> Tensor {
        var y = try w.linear(name)(be, x).reshaped([b, l, heads, dh])                    // (B,L,H,Dh)
        if let norm { y = try be.rmsNorm(y, weight: try w(norm), eps: 1e-6).y }
        return try be.transpose(y, [0, 2, 1, 3])                                          // (B,H,L,Dh)
    }
    return (try one(q, normQ), try one(k, normK), try one(v, nil))
}

/// Scaled dot-product attention in the compute dtype; returns (B,L,D) f32 with heads merged.
/// q, k, v (B,H,L,Dh) f32.
func sdpa(_ be: any Backend, _ q: Tensor, _ k: Tensor, _ v: Tensor, compute: ComputeDType) throws -> Tensor {
    let b = q.shape[0], h = q.shape[1], l = q.shape[2], dh = q.shape[3]
    let scale = 1 / Float(dh).squareRoot()
    var out: Tensor
    if compute == .bf16 {
        out = try be.attention(try be.cast(q, to: .bf16), try be.cast(k, to: .bf16), try be.cast(v, to: .bf16), scale: scale).out
        out = try be.cast(out, to: .f32)
    } else {
        out = try be.attention(q, k, v, scale: scale).out                                 // (B,H,L,Dh)
    }
    return try be.transpose(out, [0, 2, 1, 3]).reshaped([b, l, h * dh])                  // (B,L,D)
}

/// RoPE tables on the backend: cos, sin (L, Dh/2).
struct RopeTables {
    var cos: Tensor
    var sin: Tensor
}
