// diffusers `SD3Transformer2DModel` (SD3, SD3.5 Medium/Large/Turbo): patch embedding with a centre-cropped
// sin-cos table, time + pooled-text embedding, joint blocks ([image, context] attention, optional q/k RMSNorm,
// optional dual attention `attn2`, context_pre_only last block), AdaLayerNormContinuous output, unpatchify.
// Removal semantics: ModelSpec/Removal.swift (the official HierarchicalPrune identity modules).
//
// Dimension legend: B batch, C in channels, Co out channels, H×W latent size, p patch, h = H/p, w = W/p,
// Li = h·w image tokens, Lt text tokens, D inner width, J joint_attention_dim, P pooled dim, M pos_embed_max_size.

import ModelSpec
import TensorCore

/// SD3 / SD3.5 transformer over any backend.
///
///     let model = try loadTransformer(path: "sd35/transformer", backend: CPUBackend())
///     let v = try model.forward(TransformerInputs(hiddenStates: x, encoderHiddenStates: c,
///                                                 pooledProjections: p, timestep: [999]))
public final class SD3Transformer: DiffusionTransformer, @unchecked Sendable {
    public let config3: SD3Config
    public let structure: ModelStructure
    public let removal: Removal
    public let weights: WeightStore
    public var backend: any Backend { weights.backend }

    public init(config: SD3Config, structure: ModelStructure, removal: Removal, weights: WeightStore) {
        self.config3 = config
        self.structure = structure
        self.removal = removal
        self.weights = weights
    }

    public func timestep(sigma: Float) -> Float { sigma * 1000 }

    public func forward(_ inputs: TransformerInputs, removing extra: Removal) throws -> Tensor {
        try forward(inputs, removing: extra, check: InputCheck())
    }

    func forward(_ inputs: TransformerInputs, removing extra: Removal, check: InputCheck) throws -> Tensor {
        let be = backend, w = weights, c = config3
        let rm = try effectiveRemoval(extra)
        let p = c.patchSize, d = c.innerDim, m = c.posEmbedMaxSize
        // ── inputs ──
        try check.shape("hidden_states", inputs.hiddenStates, [nil, c.inChannels, nil, nil])
        let b = inputs.hiddenStates.shape[0], hp = inputs.hiddenStates.shape[2], wp = inputs.hiddenStates.shape[3]
        guard hp % p == 0, wp % p == 0, hp / p <= m, wp / p <= m, hp > 0, wp > 0 else {
            throw check.fail("hidden_states", "latent size \(hp)×\(wp) must be a positive multiple of patch_size \(p) and at most pos_embed_max_size·p = \(m * p)",
                             "pass latents whose height and width divide by \(p) and do not exceed \(m * p)")
        }
        try check.shape("encoder_hidden_states", inputs.encoderHiddenStates, [b, nil, c.jointAttentionDim])
        try check.shape("pooled_projections", inputs.pooledProjections, [b, c.pooledProjectionDim])
        let t = try check.count("timestep", inputs.timestep, b)
        let h = hp / p, wd = wp / p

        // ── embeddings ──
        let latents = try asF32(be, inputs.hiddenStates)                                        // (B,C,H,W)
        let tokens = try be.patchify(latents, patch: p, order: .channelFirst)                   // (B,Li,C·p·p)
        let conv = try w("pos_embed.proj.weight")                                              // (D,C,p,p)
        var x = try Linear(weight: conv.reshaped([d, c.inChannels * p * p]), bias: try w("pos_embed.proj.bias"))(be, tokens)
        let table = try w("pos_embed.pos_embed").reshaped([m, m, d])                           // (M,M,D)
        let rows = try be.slice(table, axis: 0, start: (m - h) / 2, length: h)                  // (h,M,D)
        let crop = try be.slice(rows, axis: 1, start: (m - wd) / 2, length: wd)                 // (h,w,D)
        x = try be.add(x, crop.reshaped([h * wd, d]))                                           // (B,Li,D)

        let tproj = try be.tensor(timestepSinusoid(t), shape: [b, 256])                       // (B,256)
        let temb = try be.add(try EmbeddingMLP(w, "time_text_embed.timestep_embedder")(be, tproj),
                              try EmbeddingMLP(w, "time_text_embed.text_embedder")(be, try asF32(be, inputs.pooledProjections)))  // (B,D)
        let siluTemb = try be.silu(temb)                                                       // (B,D)
        var ctx = try w.linear("context_embedder")(be, try asF32(be, inputs.encoderHiddenStates))  // (B,Lt,D)

        // ── blocks ──
        for blk in structure.blocks where !rm.isBlockRemoved(blk.index) {
            (ctx, x) = try jointBlock(blk, x: x, c: ctx, siluTemb: siluTemb, removal: rm)
        }

        // ── output ──
        let mod = try adaLN(be, w, "norm_out.linear", siluTemb: siluTemb, count: 2)           // scale, shift
        let y = try be.modulate(try layerNorm(be, x), shift: mod[1], scale: mod[0])            // (B,Li,D)
        let out = try w.linear("proj_out")(be, y)                                              // (B,Li,p·p·Co)
        return try be.unpatchify(out, patch: p, channels: c.outChannels, height: h, width: wd, order: .channelLast)
    }

    /// One `JointTransformerBlock`. x (B,Li,D), c (B,Lt,D) → (c, x).
    func jointBlock(_ blk: BlockSpec, x xIn: Tensor, c cIn: Tensor, siluTemb: Tensor, removal rm: Removal) throws -> (Tensor, Tensor) {
        let be = backend, w = weights, i = blk.index, pre = blk.prefix
        let heads = config3.numAttentionHeads, qk = config3.qkNorm != nil
        var x = xIn, c = cIn

        // Image-stream AdaLayerNormZero (SD35AdaLayerNormZeroX when dual).
        let lnX = try layerNorm(be, x)                                                         // (B,Li,D)
        var nX = lnX, nX2 = lnX
        var gateMsa: Tensor?, shiftMlp: Tensor?, scaleMlp: Tensor?, gateMlp: Tensor?, gateMsa2: Tensor?
        if rm.isRemoved(block: i, .norm1) {
            nX = x; nX2 = x
        } else if !rm.isRemoved(block: i, .w_norm1) {
            let e = try adaLN(be, w, pre + ".norm1.linear", siluTemb: siluTemb, count: blk.dualAttention ? 9 : 6)
            nX = try be.modulate(lnX, shift: e[0], scale: e[1])
            gateMsa = e[2]; shiftMlp = e[3]; scaleMlp = e[4]; gateMlp = e[5]
            if blk.dualAttention { nX2 = try be.modulate(lnX, shift: e[6], scale: e[7]); gateMsa2 = e[8] }
        }

        // Context-stream norm: AdaLayerNormZero, or AdaLayerNormContinuous (scale, shift) when context_pre_only.
        let lnC = try layerNorm(be, c)                                                         // (B,Lt,D)
        var nC = lnC
        var cGateMsa: Tensor?, cShiftMlp: Tensor?, cScaleMlp: Tensor?, cGateMlp: Tensor?
        if rm.isRemoved(block: i, .norm1_context) {
            nC = c
        } else if !rm.isRemoved(block: i, .w_norm1_context) {
            if blk.contextPreOnly {
                let e = try adaLN(be, w, pre + ".norm1_context.linear", siluTemb: siluTemb, count: 2)
                nC = try be.modulate(lnC, shift: e[1], scale: e[0])
            } else {
                let e = try adaLN(be, w, pre + ".norm1_context.linear", siluTemb: siluTemb, count: 6)
                nC = try be.modulate(lnC, shift: e[0], scale: e[1])
                cGateMsa = e[2]; cShiftMlp = e[3]; cScaleMlp = e[4]; cGateMlp = e[5]
            }
        }

        // Joint attention over [image, context].
        var attnX = nX, attnC = nC, attn2X = nX2
        if !rm.isRemoved(block: i, .attn) {
            let a = pre + ".attn"
            let (qx, kx, vx) = try projectQKV(be, w, nX, heads: heads, q: a + ".to_q", k: a + ".to_k", v: a + ".to_v",
                                              normQ: qk ? a + ".norm_q.weight" : nil, normK: qk ? a + ".norm_k.weight" : nil)
            let (qc, kc, vc) = try projectQKV(be, w, nC, heads: heads, q: a + ".add_q_proj", k: a + ".add_k_proj", v: a + ".add_v_proj",
                                              normQ: qk ? a + ".norm_added_q.weight" : nil, normK: qk ? a + ".norm_added_k.weight" : nil)
            let li = x.shape[1], lt = c.shape[1]
            let o = try sdpa(be, try be.concat([qx, qc], axis: 2), try be.concat([kx, kc], axis: 2),
                             try be.concat([vx, vc], axis: 2), compute: w.compute)             // (B,Li+Lt,D)
            attnX = try w.linear(a + ".to_out.0")(be, try be.slice(o, axis: 1, start: 0, length: li))
            if !blk.contextPreOnly {
                attnC = try w.linear(a + ".to_add_out")(be, try be.slice(o, axis: 1, start: li, length: lt))
            }
            if blk.dualAttention {
                let a2 = pre + ".attn2"
                let (q2, k2, v2) = try projectQKV(be, w, nX2, heads: heads, q: a2 + ".to_q", k: a2 + ".to_k", v: a2 + ".to_v",
                                                  normQ: qk ? a2 + ".norm_q.weight" : nil, normK: qk ? a2 + ".norm_k.weight" : nil)
                attn2X = try w.linear(a2 + ".to_out.0")(be, try sdpa(be, q2, k2, v2, compute: w.compute))
            }
        }
        x = try residual(be, x, gate: gateMsa, attnX)
        if blk.dualAttention { x = try residual(be, x, gate: gateMsa2, attn2X) }

        // Feed-forward (norm2 is a plain LayerNorm no removal touches).
        let nF = try modulatedNorm(be, try layerNorm(be, x), shift: shiftMlp, scale: scaleMlp)
        let ffX = rm.isRemoved(block: i, .ff) ? nF : try feedForward(be, w, pre + ".ff", nF)
        x = try residual(be, x, gate: gateMlp, ffX)

        if !blk.contextPreOnly {
            c = try residual(be, c, gate: cGateMsa, attnC)
            let nFC = try modulatedNorm(be, try layerNorm(be, c), shift: cShiftMlp, scale: cScaleMlp)
            let ffC = rm.isRemoved(block: i, .ff_context) ? nFC : try feedForward(be, w, pre + ".ff_context", nFC)
            c = try residual(be, c, gate: cGateMlp, ffC)
        }
        return (c, x)
    }
}
