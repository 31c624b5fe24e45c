// The one list of operations every backend is measured against, grouped by property (as tinygrad's Ops).
// A backend lists the ops it implements in `supportedOps`; calling any other op throws `BackendError.unsupported`.

/// Every operation a backend can implement.
///
/// Backward ops sit beside their forward op. Ops whose backward is another op in the list say so:
/// `transpose` ↔ inverse `transpose`, `concat` ↔ `slice`, `patchify` ↔ `unpatchify` (same `PatchOrder`),
/// `rope` ↔ `rope(inverse: true)`, `matmul` ↔ `matmul` with transposes plus `sum` for the bias,
/// `add` with a broadcast operand ↔ `sum` over the broadcast axes, `scale` ↔ `scale`.
public enum Op: String, CaseIterable, Sendable, CustomStringConvertible {
    // ── layout: move bytes, no arithmetic; exact on every backend ──────────────────────────────
    case cast, transpose, concat, slice, patchify, unpatchify
    // ── elementwise (f32): each output element from the matching input elements ────────────────
    case add, mul, scale, axpy
    case gelu, geluBackward, silu, siluBackward
    case modulate, modulateBackward, gateResidual, gateResidualBackward
    case rope
    // ── row-wise (f32): a reduction over the last axis, then a map ──────────────────────────────
    case layerNorm, layerNormBackward, rmsNorm, rmsNormBackward, softmax, softmaxBackward
    // ── reductions (f32 in, f64 accumulation where the backend can) ─────────────────────────────
    case sum, mean, mse, mseBackward
    // ── contractions ────────────────────────────────────────────────────────────────────────
    case matmul, linearPrepared, matmulW4A16, attention, attentionBackward
    // ── optimizer (in place) ─────────────────────────────────────────────────────────────────
    case adamw, clipGradNorm
    // ── random ───────────────────────────────────────────────────────────────────────────────
    case randomNormal

    /// The property group the op belongs to.
    public var group: OpGroup {
        switch self {
        case .cast, .transpose, .concat, .slice, .patchify, .unpatchify: .layout
        case .add, .mul, .scale, .axpy, .gelu, .geluBackward, .silu, .siluBackward, .modulate, .modulateBackward,
             .gateResidual, .gateResidualBackward, .rope: .elementwise
        case .layerNorm, .layerNormBackward, .rmsNorm, .rmsNormBackward, .softmax, .softmaxBackward: .rowwise
        case .sum, .mean, .mse, .mseBackward: .reduction
        case .matmul, .linearPrepared, .matmulW4A16, .attention, .attentionBackward: .contraction
        case .adamw, .clipGradNorm: .optimizer
        case .randomNormal: .random
        }
    }

    /// True for ops that write into an argument instead of returning a new tensor.
    public var isInPlace: Bool { self == .axpy || self == .adamw || self == .clipGradNorm }

    public var description: String { rawValue }
}

/// Groups of ops with a shared property (what tolerance applies, whether the result is exact).
public enum OpGroup: String, CaseIterable, Sendable {
    case layout, elementwise, rowwise, reduction, contraction, optimizer, random
}

/// Activation applied in a matmul epilogue, after the bias.
public enum Activation: String, Sendable, CaseIterable {
    case none
    /// GELU with the tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    case geluTanh
    /// x·sigmoid(x).
    case silu
}

/// Order of the values inside one patch vector.
public enum PatchOrder: String, Sendable, CaseIterable {
    /// (c, py, px): matches a Conv2d weight (D, C, p, p) flattened, and FLUX's latent packing.
    case channelFirst
    /// (py, px, c): matches diffusers' SD3 unpatchify of `proj_out` (einsum "nhwpqc->nchpwq").
    case channelLast
}

/// AdamW hyper-parameters (decoupled weight decay, bias-corrected moments, as torch.optim.AdamW).
public struct AdamWConfig: Sendable, Hashable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float

    public init(learningRate: Float = 1e-4, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 1e-2) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }
}
