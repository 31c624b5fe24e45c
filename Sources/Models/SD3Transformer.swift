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
        try forward(inputs, removing: extra, check: InputCheck(), tape: Tape(weights: weights)).value
    }

    func forward(_ inputs: TransformerInputs, removing extra: Removal, check: InputCheck, tape g: Tape) throws -> Var {
        let be = backend, c = config3
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
        let tokens = try g.patchify(g.constant(try asF32(be, inputs.hiddenStates)), patch: p)   // (B,Li,C·p·p)
        let conv = g.reshape(try g.param("pos_embed.proj.weight"), [d, c.inChannels * p * p])  // (D,C·p·p)
        var x = try g.linear(tokens, conv, try g.param("pos_embed.proj.bias"))                // (B,Li,D)
        let table = try weights("pos_embed.pos_embed").reshaped([m, m, d])                     // (M,M,D) buffer
        let rows = try be.slice(table, axis: 0, start: (m - h) / 2, length: h)                  // (h,M,D)
        let crop = try be.slice(rows, axis: 1, start: (m - wd) / 2, length: wd)                 // (h,w,D)
        x = try g.add(x, g.constant(crop.reshaped([h * wd, d])))                               // (B,Li,D)

        let tproj = g.constant(try be.tensor(timestepSinusoid(t), shape: [b, 256]))           // (B,256)
        let temb = try g.add(try embeddingMLP(g, "time_text_embed.timestep_embedder", tproj),
                             try embeddingMLP(g, "time_text_embed.text_embedder", g.constant(try asF32(be, inputs.pooledProjections))))  // (B,D)
        let siluTemb = try g.silu(temb)                                                        // (B,D)
        var ctx = try linear(g, "context_embedder", g.constant(try asF32(be, inputs.encoderHiddenStates)))  // (B,Lt,D)

        // ── blocks ──
        for blk in structure.blocks where !rm.isBlockRemoved(blk.index) {
            (ctx, x) = try jointBlock(g, blk, x: x, c: ctx, siluTemb: siluTemb, removal: rm)
            if g.captureBlocks.contains(blk.index) { g.captured[blk.index] = (ctx, x) }
        }

        // ── output ──
        let mod = try adaLN(g, "norm_out.linear", siluTemb: siluTemb, count: 2)               // scale, shift
        let y = try g.modulate(try g.layerNorm(x), shift: mod[1], scale: mod[0])               // (B,Li,D)
        let out = try linear(g, "proj_out", y)                                                 // (B,Li,p·p·Co)
        return try g.unpatchify(out, patch: p, channels: c.outChannels, height: h, width: wd)  // (B,Co,H,W)
    }

    /// One `JointTransformerBlock`. x (B,Li,D), c (B,Lt,D) → (c, x).
    func jointBlock(_ g: Tape, _ blk: BlockSpec, x xIn: Var, c cIn: Var, siluTemb: Var, removal rm: Removal) throws -> (Var, Var) {
        let i = blk.index, pre = blk.prefix
        let heads = config3.numAttentionHeads, qk = config3.qkNorm != nil
        var x = xIn, c = cIn

        // Image-stream AdaLayerNormZero (SD35AdaLayerNormZeroX when dual).
        let lnX = try g.layerNorm(x)                                                           // (B,Li,D)
        var nX = lnX, nX2 = lnX
        var gateMsa: Var?, shiftMlp: Var?, scaleMlp: Var?, gateMlp: Var?, gateMsa2: Var?
        if rm.isRemoved(block: i, .norm1) {
            nX = x; nX2 = x
        } else if !rm.isRemoved(block: i, .w_norm1) {
            let e = try adaLN(g, pre + ".norm1.linear", siluTemb: siluTemb, count: blk.dualAttention ? 9 : 6)
            nX = try g.modulate(lnX, shift: e[0], scale: e[1])
            gateMsa = e[2]; shiftMlp = e[3]; scaleMlp = e[4]; gateMlp = e[5]
            if blk.dualAttention { nX2 = try g.modulate(lnX, shift: e[6], scale: e[7]); gateMsa2 = e[8] }
        }

        // Context-stream norm: AdaLayerNormZero, or AdaLayerNormContinuous (scale, shift) when context_pre_only.
        var nC = c
        var cGateMsa: Var?, cShiftMlp: Var?, cScaleMlp: Var?, cGateMlp: Var?
        if !rm.isRemoved(block: i, .norm1_context) {
            let lnC = try g.layerNorm(c)                                                       // (B,Lt,D)
            nC = lnC
            if !rm.isRemoved(block: i, .w_norm1_context) {
                if blk.contextPreOnly {
                    let e = try adaLN(g, pre + ".norm1_context.linear", siluTemb: siluTemb, count: 2)
                    nC = try g.modulate(lnC, shift: e[1], scale: e[0])
                } else {
                    let e = try adaLN(g, pre + ".norm1_context.linear", siluTemb: siluTemb, count: 6)
                    nC = try g.modulate(lnC, shift: e[0], scale: e[1])
                    cGateMsa = e[2]; cShiftMlp = e[3]; cScaleMlp = e[4]; cGateMlp = e[5]
                }
            }
        }

        // Joint attention over [image, context].
        var attnX = nX, attnC = nC, attn2X = nX2
        if !rm.isRemoved(block: i, .attn) {
            let a = pre + ".attn"
            let (qx, kx, vx) = try projectQKV(g, nX, heads: heads, q: a + ".to_q", k: a + ".to_k", v: a + ".to_v",
                                              normQ: qk ? a + ".norm_q.weight" : nil, normK: qk ? a + ".norm_k.weight" : nil)
            let (qc, kc, vc) = try projectQKV(g, nC, heads: heads, q: a + ".add_q_proj", k: a + ".add_k_proj", v: a + ".add_v_proj",
                                              normQ: qk ? a + ".norm_added_q.weight" : nil, normK: qk ? a + ".norm_added_k.weight" : nil)
            let li = x.shape[1], lt = c.shape[1]
            let o = try g.attention(try g.concat([qx, qc], axis: 2), try g.concat([kx, kc], axis: 2),
                                    try g.concat([vx, vc], axis: 2))                           // (B,Li+Lt,D)
            attnX = try linear(g, a + ".to_out.0", try g.slice(o, axis: 1, start: 0, length: li))
            if !blk.contextPreOnly {
                attnC = try linear(g, a + ".to_add_out", try g.slice(o, axis: 1, start: li, length: lt))
            }
            if blk.dualAttention {
                let a2 = pre + ".attn2"
                let (q2, k2, v2) = try projectQKV(g, nX2, heads: heads, q: a2 + ".to_q", k: a2 + ".to_k", v: a2 + ".to_v",
                                                  normQ: qk ? a2 + ".norm_q.weight" : nil, normK: qk ? a2 + ".norm_k.weight" : nil)
                attn2X = try linear(g, a2 + ".to_out.0", try g.attention(q2, k2, v2))
            }
        }
        x = try residual(g, x, gate: gateMsa, attnX)
        if blk.dualAttention { x = try residual(g, x, gate: gateMsa2, attn2X) }

        // Feed-forward (norm2 is a plain LayerNorm no removal touches).
        let nF = try modulatedNorm(g, try g.layerNorm(x), shift: shiftMlp, scale: scaleMlp)
        let ffX = rm.isRemoved(block: i, .ff) ? nF : try feedForward(g, pre + ".ff", nF)
        x = try residual(g, x, gate: gateMlp, ffX)

        if !blk.contextPreOnly {
            c = try residual(g, c, gate: cGateMsa, attnC)
            let nFC = try modulatedNorm(g, try g.layerNorm(c), shift: cShiftMlp, scale: cScaleMlp)
            let ffC = rm.isRemoved(block: i, .ff_context) ? nFC : try feedForward(g, pre + ".ff_context", nFC)
            c = try residual(g, c, gate: cGateMlp, ffC)
        }
        return (c, x)
    }
}
