// The tensors a config needs (names and shapes exactly as diffusers' state_dict), the blocks
// indexed globally, and the sub-components of each block with the tensors each owns.
//
// Dimension letters: D inner dim (heads × head_dim), Dh head dim, J joint_attention_dim,
// P pooled_projection_dim, C in_channels, Co out_channels, p patch size, M pos_embed_max_size.
//
// Global block index: SD3 `transformer_blocks.i` → i. FLUX `transformer_blocks.i` → i,
// `single_transformer_blocks.j` → num_layers + j (19 + j for FLUX.1), as the official code.

/// A tensor the model needs: its state_dict name and shape.
public struct TensorSpec: Sendable, Hashable, Codable {
    public var name: String
    public var shape: [Int]
    /// A stored buffer, not a trainable parameter (SD3 `pos_embed.pos_embed`).
    public var isBuffer: Bool

    public init(name: String, shape: [Int], isBuffer: Bool = false) {
        self.name = name
        self.shape = shape
        self.isBuffer = isBuffer
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// The kind of a transformer block.
public enum BlockKind: String, Sendable, Hashable, Codable {
    /// SD3 `JointTransformerBlock` (`transformer_blocks.i`).
    case joint
    /// FLUX `FluxTransformerBlock` (`transformer_blocks.i`).
    case double
    /// FLUX `FluxSingleTransformerBlock` (`single_transformer_blocks.j`).
    case single
}

/// A removable sub-component of a block, named as in the official HierarchicalPrune code.
public enum SubComponent: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    /// The whole block (the official code's `all`).
    case block
    case norm1
    case norm1_context
    case w_norm1
    case w_norm1_context
    /// Joint attention, and `attn2` when the block has dual attention.
    case attn
    case ff
    case ff_context
    /// FLUX single blocks: `norm` (AdaLayerNormZeroSingle).
    case norm
    case w_norm
    /// FLUX single blocks: `proj_mlp` and `proj_out` together.
    case proj_mlp_out

    public static func < (a: SubComponent, b: SubComponent) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// One transformer block of a model.
public struct BlockSpec: Sendable, Hashable, Codable {
    /// Global index (FLUX single blocks continue after the double blocks).
    public var index: Int
    public var kind: BlockKind
    /// state_dict prefix, e.g. `transformer_blocks.3` or `single_transformer_blocks.0`.
    public var prefix: String
    /// SD3 last block: context is only read (AdaLayerNormContinuous, no to_add_out, no ff_context).
    public var contextPreOnly: Bool
    /// SD3.5 dual attention (`attn2`).
    public var dualAttention: Bool
    /// Removable sub-components of this block (`block` first).
    public var components: [SubComponent]
}

/// An address of a removable unit: `blocks.12` (whole block) or `blocks.12.ff`.
public struct ComponentAddress: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    public var block: Int
    public var component: SubComponent

    public init(block: Int, component: SubComponent) {
        self.block = block
        self.component = component
    }

    /// Parses `blocks.N`, `blocks.N.block`, `blocks.N.all` or `blocks.N.<component>`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 || parts.count == 3, parts[0] == "blocks", let n = Int(parts[1]), n >= 0 else {
            throw ModelSpecError(source: "<address>", subject: text,
                                 message: "not a component address",
                                 fix: "write blocks.N or blocks.N.COMPONENT, e.g. blocks.12.ff")
        }
        block = n
        if parts.count == 2 || parts[2] == "all" || parts[2] == "block" {
            component = .block
        } else if let c = SubComponent(rawValue: parts[2]) {
            component = c
        } else {
            throw ModelSpecError(source: "<address>", subject: text,
                                 message: "unknown sub-component '\(parts[2])'",
                                 fix: "use one of " + SubComponent.allCases.map(\.rawValue).joined(separator: ", "))
        }
    }

    public var description: String {
        component == .block ? "blocks.\(block)" : "blocks.\(block).\(component.rawValue)"
    }

    public static func < (a: ComponentAddress, b: ComponentAddress) -> Bool {
        (a.block, a.component) < (b.block, b.component)
    }
}

/// The full structure of a configured model: tensors, blocks and sub-component ownership.
public struct ModelStructure: Sendable, Hashable {
    public let config: ModelConfig
    /// Every tensor in state_dict order (as diffusers' `state_dict()` lists them).
    public let tensors: [TensorSpec]
    /// Blocks by global index.
    public let blocks: [BlockSpec]

    public init(_ config: ModelConfig) {
        self.config = config
        var t: [TensorSpec] = []
        var b: [BlockSpec] = []
        func linear(_ name: String, _ out: Int, _ inp: Int, bias: Bool = true) {
            t.append(TensorSpec(name: name + ".weight", shape: [out, inp]))
            if bias { t.append(TensorSpec(name: name + ".bias", shape: [out])) }
        }
        func vec(_ name: String, _ n: Int) { t.append(TensorSpec(name: name, shape: [n])) }
        func mlp(_ name: String, _ d: Int, _ inp: Int) {  // TimestepEmbedding / PixArtAlphaTextProjection
            linear(name + ".linear_1", d, inp)
            linear(name + ".linear_2", d, d)
        }
        switch config {
        case .sd3(let c):
            let d = c.innerDim, dh = c.attentionHeadDim, p = c.patchSize
            t.append(TensorSpec(name: "pos_embed.pos_embed", shape: [1, c.posEmbedMaxSize * c.posEmbedMaxSize, d], isBuffer: true))
            t.append(TensorSpec(name: "pos_embed.proj.weight", shape: [d, c.inChannels, p, p]))
            vec("pos_embed.proj.bias", d)
            mlp("time_text_embed.timestep_embedder", d, 256)
            mlp("time_text_embed.text_embedder", d, c.pooledProjectionDim)
            linear("context_embedder", c.captionProjectionDim, c.jointAttentionDim)
            for i in 0..<c.numLayers {
                let pre = "transformer_blocks.\(i)"
                let last = i == c.numLayers - 1
                let dual = c.dualAttentionLayers.contains(i)
                linear(pre + ".norm1.linear", (dual ? 9 : 6) * d, d)
                linear(pre + ".norm1_context.linear", (last ? 2 : 6) * d, d)
                if c.qkNorm != nil { vec(pre + ".attn.norm_q.weight", dh); vec(pre + ".attn.norm_k.weight", dh) }
                linear(pre + ".attn.to_q", d, d); linear(pre + ".attn.to_k", d, d); linear(pre + ".attn.to_v", d, d)
                linear(pre + ".attn.add_k_proj", d, d); linear(pre + ".attn.add_v_proj", d, d); linear(pre + ".attn.add_q_proj", d, d)
                linear(pre + ".attn.to_out.0", d, d)
                if !last { linear(pre + ".attn.to_add_out", d, d) }
                if c.qkNorm != nil { vec(pre + ".attn.norm_added_q.weight", dh); vec(pre + ".attn.norm_added_k.weight", dh) }
                if dual {
                    if c.qkNorm != nil { vec(pre + ".attn2.norm_q.weight", dh); vec(pre + ".attn2.norm_k.weight", dh) }
                    linear(pre + ".attn2.to_q", d, d); linear(pre + ".attn2.to_k", d, d); linear(pre + ".attn2.to_v", d, d)
                    linear(pre + ".attn2.to_out.0", d, d)
                }
                linear(pre + ".ff.net.0.proj", 4 * d, d); linear(pre + ".ff.net.2", d, 4 * d)
                if !last { linear(pre + ".ff_context.net.0.proj", 4 * d, d); linear(pre + ".ff_context.net.2", d, 4 * d) }
                var comps: [SubComponent] = [.block, .norm1, .norm1_context, .w_norm1, .w_norm1_context, .attn, .ff]
                if !last { comps.append(.ff_context) }
                b.append(BlockSpec(index: i, kind: .joint, prefix: pre, contextPreOnly: last, dualAttention: dual, components: comps))
            }
            linear("norm_out.linear", 2 * d, d)
            linear("proj_out", p * p * c.outChannels, d)
        case .flux(let c):
            let d = c.innerDim, dh = c.attentionHeadDim
            mlp("time_text_embed.timestep_embedder", d, 256)
            if c.guidanceEmbeds { mlp("time_text_embed.guidance_embedder", d, 256) }
            mlp("time_text_embed.text_embedder", d, c.pooledProjectionDim)
            linear("context_embedder", d, c.jointAttentionDim)
            linear("x_embedder", d, c.inChannels)
            for i in 0..<c.numLayers {
                let pre = "transformer_blocks.\(i)"
                linear(pre + ".norm1.linear", 6 * d, d)
                linear(pre + ".norm1_context.linear", 6 * d, d)
                vec(pre + ".attn.norm_q.weight", dh); vec(pre + ".attn.norm_k.weight", dh)
                linear(pre + ".attn.to_q", d, d); linear(pre + ".attn.to_k", d, d); linear(pre + ".attn.to_v", d, d)
                linear(pre + ".attn.to_out.0", d, d)
                vec(pre + ".attn.norm_added_q.weight", dh); vec(pre + ".attn.norm_added_k.weight", dh)
                linear(pre + ".attn.add_q_proj", d, d); linear(pre + ".attn.add_k_proj", d, d); linear(pre + ".attn.add_v_proj", d, d)
                linear(pre + ".attn.to_add_out", d, d)
                linear(pre + ".ff.net.0.proj", 4 * d, d); linear(pre + ".ff.net.2", d, 4 * d)
                linear(pre + ".ff_context.net.0.proj", 4 * d, d); linear(pre + ".ff_context.net.2", d, 4 * d)
                b.append(BlockSpec(index: i, kind: .double, prefix: pre, contextPreOnly: false, dualAttention: false,
                                   components: [.block, .norm1, .norm1_context, .w_norm1, .w_norm1_context, .attn, .ff, .ff_context]))
            }
            for j in 0..<c.numSingleLayers {
                let pre = "single_transformer_blocks.\(j)"
                linear(pre + ".norm.linear", 3 * d, d)
                linear(pre + ".proj_mlp", 4 * d, d)
                linear(pre + ".proj_out", d, 5 * d)
                vec(pre + ".attn.norm_q.weight", dh); vec(pre + ".attn.norm_k.weight", dh)
                linear(pre + ".attn.to_q", d, d); linear(pre + ".attn.to_k", d, d); linear(pre + ".attn.to_v", d, d)
                b.append(BlockSpec(index: c.numLayers + j, kind: .single, prefix: pre, contextPreOnly: false, dualAttention: false,
                                   components: [.block, .norm, .w_norm, .attn, .proj_mlp_out]))
            }
            linear("norm_out.linear", 2 * d, d)
            linear("proj_out", c.patchSize * c.patchSize * c.outChannels, d)
        }
        tensors = t
        blocks = b
    }

    /// Tensor names owned by one address (the tensors that become unused when it is removed).
    ///
    /// `norm1` and `w_norm1` own the same tensors (`norm1.linear.*`); `attn` includes `attn2.*`
    /// and, in SD3 and FLUX double blocks, the context projections and `to_add_out`.
    public func tensorNames(of address: ComponentAddress) throws -> [String] {
        try validate(address)
        let blk = blocks[address.block]
        let pre = blk.prefix + "."
        let local: [String]
        switch address.component {
        case .block: local = [""]
        case .norm1, .w_norm1: local = ["norm1."]
        case .norm1_context, .w_norm1_context: local = ["norm1_context."]
        case .attn: local = ["attn.", "attn2."]
        case .ff: local = ["ff."]
        case .ff_context: local = ["ff_context."]
        case .norm, .w_norm: local = ["norm."]
        case .proj_mlp_out: local = ["proj_mlp.", "proj_out."]
        }
        return tensors.map(\.name).filter { n in n.hasPrefix(pre) && local.contains { n.dropFirst(pre.count).hasPrefix($0) } }
    }

    /// Throws unless `address` names a block that exists and a sub-component that block has.
    public func validate(_ address: ComponentAddress) throws {
        guard address.block < blocks.count else {
            throw ModelSpecError(source: "<address>", subject: address.description,
                                 message: "block \(address.block) does not exist; this \(config.architecture.rawValue) has blocks 0...\(blocks.count - 1)",
                                 fix: "use a block index below \(blocks.count)")
        }
        let blk = blocks[address.block]
        guard blk.components.contains(address.component) else {
            let why = blk.contextPreOnly && address.component == .ff_context
                ? "block \(blk.index) is the last SD3 block (context_pre_only) and has no ff_context"
                : "a \(blk.kind.rawValue) block has no '\(address.component.rawValue)'"
            throw ModelSpecError(source: "<address>", subject: address.description, message: why,
                                 fix: "block \(blk.index) has: " + blk.components.map(\.rawValue).joined(separator: ", "))
        }
    }

    /// Every removable address of the model (whole blocks and sub-components), in block order.
    public var allAddresses: [ComponentAddress] {
        blocks.flatMap { b in b.components.map { ComponentAddress(block: b.index, component: $0) } }
    }

    /// Number of trainable parameters (buffers excluded), as `sum(p.numel() for p in model.parameters())`.
    public var parameterCount: Int { tensors.filter { !$0.isBuffer }.reduce(0) { $0 + $1.elementCount } }

    /// Parameters owned by one address.
    public func parameterCount(of address: ComponentAddress) throws -> Int {
        let names = Set(try tensorNames(of: address))
        return tensors.filter { names.contains($0.name) && !$0.isBuffer }.reduce(0) { $0 + $1.elementCount }
    }

    /// Names of tensors no longer used after `removal` (never loaded by the forward pass).
    public func removedTensorNames(_ removal: Removal) throws -> Set<String> {
        var out = Set<String>()
        for a in removal.addresses { out.formUnion(try tensorNames(of: a)) }
        return out
    }

    /// Tensors the model still needs after `removal`, in state_dict order.
    public func requiredTensors(after removal: Removal) throws -> [TensorSpec] {
        let gone = try removedTensorNames(removal)
        return tensors.filter { !gone.contains($0.name) }
    }

    /// Parameter count after `removal` (what the official `get_num_params` reports after the
    /// identity replacements, which have no parameters).
    public func parameterCount(after removal: Removal) throws -> Int {
        try requiredTensors(after: removal).filter { !$0.isBuffer }.reduce(0) { $0 + $1.elementCount }
    }
}
