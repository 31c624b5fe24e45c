// TensorCore: tensors, the one list of ops, the backend protocol, the scalar reference backend and Philox noise.
// This file is the module overview (no code besides the version); start here when writing model or training code.
//
// ┌──────────────────────────────────────────────────────────────────────────────────────────────────────────┐
// │ Writing layers (llm.c style: a forward and a backward per layer, saved activations passed explicitly)     │
// └──────────────────────────────────────────────────────────────────────────────────────────────────────────┘
//
//     let be: any Backend = CPUBackend()                       // only the CLI and tests pick a concrete backend
//     // x (B,L,D); shift, scale, gate (B,D) from chunk(adaLN, 6, axis: -1); w1 (4D,D), w2 (D,4D)
//     let (n, mean, rstd) = try be.layerNorm(x, eps: 1e-6)
//     let m  = try be.modulate(n, shift: shift, scale: scale)
//     let h  = try be.linear(m, weight: w1, bias: b1)          // pre-activation kept for the backward
//     let a  = try be.gelu(h)
//     let f  = try be.linear(a, weight: w2, bias: b2)
//     let y  = try be.gateResidual(x, gate: gate, f)
//     // backward, in reverse, each step the pair of the forward above:
//     let (df, dgate) = try be.gateResidualBackward(dy, gate: gate, f)            // d x += dy
//     let g2 = try be.linearBackward(df, a, weight: w2, hasBias: true)           // dx, dweight, dbias
//     let dh = try be.geluBackward(g2.dx, h)
//     let g1 = try be.linearBackward(dh, m, weight: w1, hasBias: true)
//     let (dn, dshift, dscale) = try be.modulateBackward(g1.dx, n, scale: scale)
//     let dx = try be.add(dy, try be.layerNormBackward(dn, x, mean: mean, rstd: rstd))
//
// Attention: reshape (B,L,H·Dh) → (B,L,H,Dh), `transpose(_, [0,2,1,3])` → (B,H,L,Dh), `rmsNorm` over Dh, `rope`,
// `concat` the streams along axis 2, `attention` (keep out and lse), `split` back, transpose back.
// Broadcasts: `add`/`mul` broadcast their second operand (numpy rules); its gradient is `reduce(_:toShape:)`.
// In place: `axpy` (gradient accumulation), `adamw`, `clipGradNorm`. Everything else returns new tensors.
//
// ┌──────────────────────────────────────────────────────────────────────────────────────────────────────────┐
// │ Contracts every backend keeps                                                                            │
// └──────────────────────────────────────────────────────────────────────────────────────────────────────────┘
// - One list of ops (`Op`); `supports(op)`; a missing op throws `BackendError.unsupported` ("op X has no CUDA
//   implementation"), never a fallback. Argument rules live once in `OpChecks`.
// - Determinism: the same inputs give bit-identical outputs on every run and thread count (each output element
//   is reduced in a fixed order). Different backends agree within the conformance tolerances, except layout
//   ops and `randomNormal`, which are bit-exact everywhere (Philox.swift documents the noise mapping).
// - Tensors are contiguous row-major; `reshaped` and `rows` are free views; `Tensor.mapped` wraps file bytes.
// - 4-bit weights: `Packed4BitWeight` (bitsandbytes packing); the quantisation module builds it.
// - `ReferenceBackend` is the oracle (plain loops, f64); `CPUBackend` (module CPUBackend) runs C kernels.
//   Tests/TensorCoreTests/OpCases.swift holds one conformance case per op: a new op or backend adds itself there.

/// Version of the numerics of the host code every backend shares (Philox noise mapping, host casts, 4-bit packing
/// and codebooks in `Quant`): the `tensorcore` family in every backend's action keys (Numerics.swift). Bump it when
/// any of their results change; the reference backend's ops have their own version (`ReferenceBackend`).
public let tensorCoreNumericsVersion = 1
