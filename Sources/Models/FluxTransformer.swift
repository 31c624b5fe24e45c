// diffusers `FluxTransformer2DModel` (FLUX.1 dev / schnell): x_embedder on packed latents, time (+ guidance)
// + pooled-text embedding (timestep and guidance ×1000 inside), double-stream blocks ([text, image] attention
// with q/k RMSNorm then RoPE), single-stream blocks on the joint sequence, AdaLayerNormContinuous output.
// Removal semantics: ModelSpec/Removal.swift.
//
// Dimension legend: B batch, Li image tokens, Lt text tokens, L = Lt+Li, C in channels, D inner width,
// H heads, Dh head width, J joint_attention_dim, P pooled dim.

import ModelSpec
import TensorCore

/// FLUX transformer over any backend.
public final class FluxTransformer: DiffusionTransformer, @unchecked Sendable {
    public let fluxConfig: FluxConfig
    public let structure: ModelStructure
    public let removal: Removal
    public let weights: WeightStore
    public var backend: any Backend { weights.backend }

    public init(config: FluxConfig, structure: ModelStructure, removal: Removal, weights: WeightStore) {
        self.fluxConfig = config
        self.structure = structure
        self.removal = removal
        self.weights = weights
    }

    public func timestep(sigma: Float) -> Float { sigma }

    public func forward(_ inputs: TransformerInputs, removing extra: Removal) throws -> Tensor {
        try forward(inputs, removing: extra, check: InputCheck(), tape: Tape(weights: weights)).value
    }

    func forward(_ inputs: TransformerInputs, removing extra: Removal, check: InputCheck, tape g: Tape) throws -> Var {
        let be = backend, c = fluxConfig
        let rm = try effectiveRemoval(extra)
        // ── inputs ──
        try check.shape("hidden_states", inputs.hiddenStates, [nil, nil, c.inChannels])
        let b = inputs.hiddenStates.shape[0], li = inputs.hiddenStates.shape[1]
        try check.shape("encoder_hidden_states", inputs.encoderHiddenStates, [b, nil, c.jointAttentionDim])
        let lt = inputs.encoderHiddenStates.shape[1]
        try check.shape("pooled_projections", inputs.pooledProjections, [b, c.pooledProjectionDim])
        let t = try check.count("timestep", inputs.timestep, b)
        let gd: [Float]? = c.guidanceEmbeds ? try check.count("guidance", inputs.guidance, b) : nil
        let imgIds = try check.count("img_ids", inputs.imgIds, li * 3)
        let txtIds = try check.count("txt_ids", inputs.txtIds ?? [Float](repeating: 0, count: lt * 3), lt * 3)

        // ── embeddings ──
        var x = try linear(g, "x_embedder", g.constant(try asF32(be, inputs.hiddenStates)))    // (B,Li,D)
        let tproj = g.constant(try be.tensor(timestepSinusoid(t.map { $0 * 1000 }), shape: [b, 256]))
        var temb = try embeddingMLP(g, "time_text_embed.timestep_embedder", tproj)            // (B,D)
        if let gd {
            let gproj = g.constant(try be.tensor(timestepSinusoid(gd.map { $0 * 1000 }), shape: [b, 256]))
            temb = try g.add(temb, try embeddingMLP(g, "time_text_embed.guidance_embedder", gproj))
        }
        temb = try g.add(temb, try embeddingMLP(g, "time_text_embed.text_embedder", g.constant(try asF32(be, inputs.pooledProjections))))
        let siluTemb = try g.silu(temb)                                                        // (B,D)
        var ctx = try linear(g, "context_embedder", g.constant(try asF32(be, inputs.encoderHiddenStates)))  // (B,Lt,D)

        let (cs, sn) = fluxRopeTables(ids: txtIds + imgIds, length: lt + li, axes: c.axesDimsRope)
        let half = c.attentionHeadDim / 2
        let rope = RopeTables(cos: try be.tensor(cs, shape: [lt + li, half]), sin: try be.tensor(sn, shape: [lt + li, half]))

        // ── blocks ──
        for blk in structure.blocks where blk.kind == .double && !rm.isBlockRemoved(blk.index) {
            (ctx, x) = try doubleBlock(g, blk, x: x, c: ctx, siluTemb: siluTemb, rope: rope, removal: rm)
            if g.captureBlocks.contains(blk.index) { g.captured[blk.index] = (ctx, x) }
        }
        var joint = try g.concat([ctx, x], axis: 1)                                            // (B,L,D)
        for blk in structure.blocks where blk.kind == .single && !rm.isBlockRemoved(blk.index) {
            joint = try singleBlock(g, blk, joint, siluTemb: siluTemb, rope: rope, removal: rm)
            if g.captureBlocks.contains(blk.index) {
                g.captured[blk.index] = (try g.slice(joint, axis: 1, start: 0, length: lt), try g.slice(joint, axis: 1, start: lt, length: li))
            }
        }
        x = try g.slice(joint, axis: 1, start: lt, length: li)                                 // (B,Li,D)

        // ── output ──
        let mod = try adaLN(g, "norm_out.linear", siluTemb: siluTemb, count: 2)               // scale, shift
        let y = try g.modulate(try g.layerNorm(x), shift: mod[1], scale: mod[0])
        return try linear(g, "proj_out", y)                                                    // (B,Li,p·p·Co)
    }

    /// AdaLayerNormZero of one stream under removal: (normalised input, gate_msa, shift_mlp, scale_mlp, gate_mlp).
    func zeroNorm(_ g: Tape, _ x: Var, _ linearName: String, removed: Bool, withNorm: Bool, siluTemb: Var)
        throws -> (Var, Var?, Var?, Var?, Var?) {
        if removed { return (x, nil, nil, nil, nil) }
        let ln = try g.layerNorm(x)
        if withNorm { return (ln, nil, nil, nil, nil) }
        let e = try adaLN(g, linearName, siluTemb: siluTemb, count: 6)
        return (try g.modulate(ln, shift: e[0], scale: e[1]), e[2], e[3], e[4], e[5])
    }

    /// One `FluxTransformerBlock`. x (B,Li,D), c (B,Lt,D) → (c, x).
    func doubleBlock(_ g: Tape, _ blk: BlockSpec, x xIn: Var, c cIn: Var, siluTemb: Var, rope: RopeTables,
                     removal rm: Removal) throws -> (Var, Var) {
        let i = blk.index, pre = blk.prefix, heads = fluxConfig.numAttentionHeads
        var x = xIn, c = cIn
        let (nX, gateMsa, shiftMlp, scaleMlp, gateMlp) = try zeroNorm(
            g, x, pre + ".norm1.linear", removed: rm.isRemoved(block: i, .norm1), withNorm: rm.isRemoved(block: i, .w_norm1), siluTemb: siluTemb)
        let (nC, cGateMsa, cShiftMlp, cScaleMlp, cGateMlp) = try zeroNorm(
            g, c, pre + ".norm1_context.linear", removed: rm.isRemoved(block: i, .norm1_context),
            withNorm: rm.isRemoved(block: i, .w_norm1_context), siluTemb: siluTemb)

        var attnX = nX, attnC = nC
        if !rm.isRemoved(block: i, .attn) {
            let a = pre + ".attn"
            let (qx, kx, vx) = try projectQKV(g, nX, heads: heads, q: a + ".to_q", k: a + ".to_k", v: a + ".to_v",
                                              normQ: a + ".norm_q.weight", normK: a + ".norm_k.weight")
            let (qc, kc, vc) = try projectQKV(g, nC, heads: heads, q: a + ".add_q_proj", k: a + ".add_k_proj", v: a + ".add_v_proj",
                                              normQ: a + ".norm_added_q.weight", normK: a + ".norm_added_k.weight")
            let q = try g.rope(try g.concat([qc, qx], axis: 2), rope)                          // (B,H,L,Dh), [text, image]
            let k = try g.rope(try g.concat([kc, kx], axis: 2), rope)
            let o = try g.attention(q, k, try g.concat([vc, vx], axis: 2))                     // (B,L,D)
            let lt = c.shape[1], li = x.shape[1]
            attnC = try linear(g, a + ".to_add_out", try g.slice(o, axis: 1, start: 0, length: lt))
            attnX = try linear(g, a + ".to_out.0", try g.slice(o, axis: 1, start: lt, length: li))
        }
        x = try residual(g, x, gate: gateMsa, attnX)
        let nF = try modulatedNorm(g, try g.layerNorm(x), shift: shiftMlp, scale: scaleMlp)
        x = try residual(g, x, gate: gateMlp, rm.isRemoved(block: i, .ff) ? nF : try feedForward(g, pre + ".ff", nF))

        c = try residual(g, c, gate: cGateMsa, attnC)
        let nFC = try modulatedNorm(g, try g.layerNorm(c), shift: cShiftMlp, scale: cScaleMlp)
        c = try residual(g, c, gate: cGateMlp, rm.isRemoved(block: i, .ff_context) ? nFC : try feedForward(g, pre + ".ff_context", nFC))
        return (c, x)
    }

    /// One `FluxSingleTransformerBlock` on the joint sequence. joint (B,L,D) → (B,L,D).
    func singleBlock(_ g: Tape, _ blk: BlockSpec, _ joint: Var, siluTemb: Var, rope: RopeTables, removal rm: Removal) throws -> Var {
        let i = blk.index, pre = blk.prefix, heads = fluxConfig.numAttentionHeads
        var n = joint
        var gate: Var?
        if !rm.isRemoved(block: i, .norm) {
            let ln = try g.layerNorm(joint)
            n = ln
            if !rm.isRemoved(block: i, .w_norm) {
                let e = try adaLN(g, pre + ".norm.linear", siluTemb: siluTemb, count: 3)        // shift, scale, gate
                n = try g.modulate(ln, shift: e[0], scale: e[1])
                gate = e[2]
            }
        }
        var attn = n
        if !rm.isRemoved(block: i, .attn) {
            let a = pre + ".attn"
            let (q, k, v) = try projectQKV(g, n, heads: heads, q: a + ".to_q", k: a + ".to_k", v: a + ".to_v",
                                           normQ: a + ".norm_q.weight", normK: a + ".norm_k.weight")
            attn = try g.attention(try g.rope(q, rope), try g.rope(k, rope), v)               // (B,L,D)
        }
        let y: Var
        if rm.isRemoved(block: i, .proj_mlp_out) {
            y = attn
        } else {
            let mlp = try linear(g, pre + ".proj_mlp", n, activation: .geluTanh)              // (B,L,4D)
            y = try linear(g, pre + ".proj_out", try g.concat([attn, mlp], axis: 2))          // (B,L,D)
        }
        return try residual(g, joint, gate: gate, y)
    }
}
