// A config's dimensions checked against the tensors a checkpoint actually holds, before anything is built from
// them. A hostile config.json (`num_layers: 1000000000`) must fail at once, naming the key and the file, rather
// than make `ModelStructure` list a billion blocks: block counts are bounded by the blocks present, widths by the
// shapes of tensors every model has, and the rest by the size of the weights.

import TensorFiles

extension ModelConfig {
    /// Throws `ModelSpecError` (source `file`, subject the config key) unless every dimension agrees with `folder`.
    ///
    /// - Block counts (`num_layers`, `num_single_layers`): each block must have tensors in the weights or be
    ///   listed whole in `removed` (`hprune_removed`), so the count is at most the tensors present.
    /// - Widths (`num_attention_heads` × `attention_head_dim`, `in_channels`, `patch_size`, `pooled_projection_dim`,
    ///   `joint_attention_dim`, `caption_projection_dim`, `out_channels`, `pos_embed_max_size`): against the
    ///   shape of a float tensor outside the blocks that holds them (checked when that tensor is present and
    ///   float; a missing one is reported later as a missing tensor).
    /// - `sample_size` (SD3): at most `pos_embed_max_size × patch_size`, the largest latent the model embeds.
    /// Work is linear in the number of tensors, whatever the config says.
    public func checkDimensions(against folder: DiffusersFolder, removed: [String], file: String) throws {
        // Whole blocks recorded as removed (global indexes); other entries are checked later by `Removal`.
        var removedBlocks = Set<Int>()
        for r in removed {
            if let a = try? ComponentAddress(parsing: r), a.component == .block { removedBlocks.insert(a.block) }
        }
        func blockIndexes(_ prefix: String) -> Set<Int> {
            var out = Set<Int>()
            for t in folder.tensors where t.name.hasPrefix(prefix) {
                let rest = t.name.dropFirst(prefix.count)
                if let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]), i >= 0 { out.insert(i) }
            }
            return out
        }
        /// Blocks `first ..< first + count` (global) with weights (`prefix` local index) or removed whole.
        func checkCount(_ key: String, _ count: Int, prefix: String, first: Int) throws {
            let present = blockIndexes(prefix).filter { $0 < count }
            let gone = removedBlocks.filter { $0 >= first && $0 - first < count && !present.contains($0 - first) }
            guard present.count + gone.count < count else { return }
            // The first block with neither tensors nor a removal record (found within present + gone + 1 steps).
            var missing = 0
            while present.contains(missing) || gone.contains(first + missing) { missing += 1 }
            let shown = present.sorted().prefix(8).map(String.init).joined(separator: ", ") + (present.count > 8 ? ", …" : "")
            throw ModelSpecError(
                source: file, subject: key,
                message: "\(key) is \(count), but block \(prefix)\(missing) has no tensors in the weights and is not "
                    + "listed in \(removedComponentsConfigKey) (the weights hold \(present.count) of these blocks"
                    + (present.isEmpty ? "" : ": \(shown)") + ")",
                fix: "set \(key) to the number of blocks the checkpoint has, record removed blocks under "
                    + "\(removedComponentsConfigKey), or use the weights this config belongs to")
        }

        let floatShapes: [String: [Int]] = {
            var out: [String: [Int]] = [:]
            for t in folder.tensors where t.dtype.isFloatingPoint { out[t.name] = t.shape }
            return out
        }()
        /// `tensor`'s axis `axis` must equal `want` (which is `what` in words).
        func anchor(_ key: String, _ what: String, _ want: Int, _ tensor: String, axis: Int) throws {
            guard let shape = floatShapes[tensor], axis < shape.count, shape[axis] != want else { return }
            throw ModelSpecError(
                source: file, subject: key,
                message: "\(what) is \(want), but tensor '\(tensor)' has shape \(shape) (axis \(axis) is \(shape[axis]))",
                fix: "set \(key) to match the weights, or use the weights this config belongs to")
        }

        switch self {
        case .sd3(let c):
            try checkCount("num_layers", c.numLayers, prefix: "transformer_blocks.", first: 0)
            let d = c.innerDim, p = c.patchSize
            let heads = "num_attention_heads × attention_head_dim (\(c.numAttentionHeads) × \(c.attentionHeadDim))"
            try anchor("num_attention_heads", heads, d, "pos_embed.proj.bias", axis: 0)
            try anchor("num_attention_heads", heads, d, "pos_embed.proj.weight", axis: 0)
            try anchor("in_channels", "in_channels", c.inChannels, "pos_embed.proj.weight", axis: 1)
            try anchor("patch_size", "patch_size", p, "pos_embed.proj.weight", axis: 2)
            try anchor("pos_embed_max_size", "pos_embed_max_size² (\(c.posEmbedMaxSize)²)",
                       c.posEmbedMaxSize * c.posEmbedMaxSize, "pos_embed.pos_embed", axis: 1)
            try anchor("pooled_projection_dim", "pooled_projection_dim", c.pooledProjectionDim,
                       "time_text_embed.text_embedder.linear_1.weight", axis: 1)
            try anchor("caption_projection_dim", "caption_projection_dim", c.captionProjectionDim, "context_embedder.weight", axis: 0)
            try anchor("joint_attention_dim", "joint_attention_dim", c.jointAttentionDim, "context_embedder.weight", axis: 1)
            try anchor("out_channels", "patch_size² × out_channels (\(p)² × \(c.outChannels))", p * p * c.outChannels,
                       "proj_out.bias", axis: 0)
            if c.qkNorm != nil {
                try anchor("attention_head_dim", "attention_head_dim", c.attentionHeadDim,
                           "transformer_blocks.0.attn.norm_q.weight", axis: 0)
            }
            if c.sampleSize > c.posEmbedMaxSize * p {
                throw ModelSpecError(
                    source: file, subject: "sample_size",
                    message: "sample_size is \(c.sampleSize), larger than pos_embed_max_size × patch_size = \(c.posEmbedMaxSize * p), the largest latent this model embeds",
                    fix: "set sample_size to at most \(c.posEmbedMaxSize * p)")
            }
        case .flux(let c):
            try checkCount("num_layers", c.numLayers, prefix: "transformer_blocks.", first: 0)
            try checkCount("num_single_layers", c.numSingleLayers, prefix: "single_transformer_blocks.", first: c.numLayers)
            let d = c.innerDim, p = c.patchSize
            let heads = "num_attention_heads × attention_head_dim (\(c.numAttentionHeads) × \(c.attentionHeadDim))"
            try anchor("num_attention_heads", heads, d, "x_embedder.bias", axis: 0)
            try anchor("num_attention_heads", heads, d, "x_embedder.weight", axis: 0)
            try anchor("in_channels", "in_channels", c.inChannels, "x_embedder.weight", axis: 1)
            try anchor("joint_attention_dim", "joint_attention_dim", c.jointAttentionDim, "context_embedder.weight", axis: 1)
            try anchor("pooled_projection_dim", "pooled_projection_dim", c.pooledProjectionDim,
                       "time_text_embed.text_embedder.linear_1.weight", axis: 1)
            try anchor("out_channels", "patch_size² × out_channels (\(p)² × \(c.outChannels))", p * p * c.outChannels,
                       "proj_out.bias", axis: 0)
            for t in ["transformer_blocks.0.attn.norm_q.weight", "single_transformer_blocks.0.attn.norm_q.weight"] {
                try anchor("attention_head_dim", "attention_head_dim", c.attentionHeadDim, t, axis: 0)
            }
        }
    }
}

/// Upper bounds on config values, checked while parsing, far above any real model (FLUX.1: D = 3072, 57 blocks;
/// SD3.5 Large: pos_embed_max_size 192) and low enough that no shape product the structure forms can overflow.
enum ConfigLimits {
    /// Widths, channel counts and block counts.
    static let dimension = 1 << 20
    /// `patch_size`.
    static let patch = 64
    /// `pos_embed_max_size` (its square is a tensor axis).
    static let posEmbed = 1 << 14
}
