// A set of removed blocks / sub-components, and the exact forward-pass semantics of each removal,
// as the official HierarchicalPrune code implements them (utils/identity_block.py,
// model/builder.py `cut_transformer_block_component`, model/transformers.py), on diffusers 0.42.

/// A validated set of removed addresses.
///
/// # Removal semantics (for the forward-pass author)
///
/// The official code swaps modules for parameter-free identity modules; the block's own forward
/// is unchanged. Notation, for an SD3 / FLUX double block with image stream x and context c:
/// `LN` = LayerNorm(eps 1e-6, no affine); `n1(x) = LN(x)·(1+scale_msa)+shift_msa` (AdaLN-Zero);
/// the feed-forward input is always `LN2(x)·(1+scale_mlp)+shift_mlp`, where `norm2` / `norm2_context`
/// are separate parameter-free LayerNorms that **no removal touches**.
///
/// - `blocks.i` (whole block): the block returns its inputs, `(c, x)` unchanged. FLUX single:
///   the joint sequence passes unchanged. All of the block's tensors are unused.
/// - `norm1`: `norm1` returns `(x, gate_msa = 1, shift_mlp = 0, scale_mlp = 0, gate_mlp = 1)` —
///   the attention input is the **raw, unnormalised** x; the ff input is `LN2(x)` (scale/shift 0);
///   both residual gates are 1. With dual attention it also returns `norm_hidden_states2 = x` and
///   `gate_msa2 = 1`. Unused: `norm1.linear.*`.
/// - `w_norm1` ("with norm"): as `norm1` but the attention input (and attn2 input) is `LN(x)`.
///   Unused: `norm1.linear.*`.
/// - `norm1_context` / `w_norm1_context`: the same for the context stream (`c`, `norm1_context.linear.*`).
///   In the last SD3 block (context_pre_only, AdaLayerNormContinuous) the replacement returns
///   only the normalised context: raw c for `norm1_context`, `LN(c)` for `w_norm1_context`; it feeds
///   the joint attention's context q/k/v and nothing else.
/// - `attn`: attention returns its **inputs** (the normalised, modulated streams), not zero:
///   `x += gate_msa · n1(x)`, `c += c_gate_msa · n1c(c)`. With dual attention `attn2` is replaced too:
///   `x += gate_msa2 · n1b(x)` (its own modulated input). In the last SD3 block the context
///   output is discarded anyway. Unused: `attn.*` (incl. `add_*_proj`, `to_add_out`, q/k norms) and `attn2.*`.
/// - `ff`: the feed-forward returns its input: `x += gate_mlp · (LN2(x)·(1+scale_mlp)+shift_mlp)`.
///   Unused: `ff.*`. `ff_context` likewise for c (`ff_context.*`); the last SD3 block has none
///   (the address is rejected).
/// - FLUX single blocks (`n = LN(x)·(1+scale)+shift`, `gate` from `norm.linear`):
///   - `norm`: `norm` returns `(x, gate = 1)` — attention and proj_mlp read the raw x.
///   - `w_norm`: returns `(LN(x), gate = 1)`.
///   - `attn`: attention returns its input n, so `proj_out` sees `cat[n, GELU(proj_mlp(n))]`.
///   - `proj_mlp_out`: `proj_mlp` and `proj_out` become identities and the block keeps the first D
///     channels: `x += gate · attn(n)` (the GELU branch is computed and discarded by the official
///     code; it need not be computed). Unused: `proj_mlp.*`, `proj_out.*`.
///   In diffusers 0.42 single blocks run on `cat[c, x]` (text first) and split afterwards; the
///   semantics apply to the joint sequence.
///
/// Combinations: removals compose as module swaps do. A whole-block removal makes the block's
/// other entries redundant (they are kept but change nothing). `norm1` with `w_norm1` (or the
/// `_context` / single-block pairs) conflict — both replace the same module — and are rejected.
///
/// Parameter counts: identity modules have no parameters, so the count after removal is the
/// total minus the owned tensors (`ModelStructure.parameterCount(after:)`).
public struct Removal: Sendable, Hashable, Codable {
    /// Removed addresses, sorted.
    public private(set) var addresses: [ComponentAddress]

    /// No removal.
    public init() { addresses = [] }

    /// A removal validated against `structure`.
    public init(_ addresses: [ComponentAddress], in structure: ModelStructure) throws {
        self.init()
        for a in addresses { try insert(a, in: structure) }
    }

    /// A removal from address strings (`["blocks.25", "blocks.12.ff"]`).
    public init(parsing texts: [String], in structure: ModelStructure) throws {
        try self.init(texts.map { try ComponentAddress(parsing: $0) }, in: structure)
    }

    /// Adds one address after validating it; duplicates are ignored.
    public mutating func insert(_ a: ComponentAddress, in structure: ModelStructure) throws {
        try structure.validate(a)
        if addresses.contains(a) { return }
        let pairs: [(SubComponent, SubComponent)] = [(.norm1, .w_norm1), (.norm1_context, .w_norm1_context), (.norm, .w_norm)]
        for (p, q) in pairs where a.component == p || a.component == q {
            let other = a.component == p ? q : p
            if addresses.contains(ComponentAddress(block: a.block, component: other)) {
                throw ModelSpecError(source: "<removal>", subject: a.description,
                                     message: "conflicts with blocks.\(a.block).\(other.rawValue): both replace the same norm module",
                                     fix: "remove only one of \(p.rawValue) and \(q.rawValue) in a block")
            }
        }
        addresses.append(a)
        addresses.sort()
    }

    /// Whether `component` of `block` is removed (a whole-block removal counts for every component).
    public func isRemoved(block: Int, _ component: SubComponent) -> Bool {
        addresses.contains(ComponentAddress(block: block, component: .block))
            || addresses.contains(ComponentAddress(block: block, component: component))
    }

    /// Turns every block whose every module slot is replaced into a whole-block removal, as the official code does
    /// after ranked pruning (`model/builder.py` `cut_transformer`: "Check if all components within a transformer
    /// block is replaced, if so, put identity_block" — `len(v) == 5` for SD3 / FLUX double blocks, `3` for FLUX
    /// single blocks). A slot is one replaceable module: the image norm (`norm1` or `w_norm1`), the context norm
    /// (`norm1_context` or `w_norm1_context`), `attn`, `ff`, `ff_context` (when the block has one); FLUX single:
    /// `norm` or `w_norm`, `attn`, `proj_mlp_out`. Such a block has no parameters left, and the identity block is
    /// what the official code then runs (it is not the composition of the module swaps: with `norm1` and `attn`
    /// both gone the swaps would give x + x, the identity block gives x).
    /// - Returns: the blocks collapsed, ascending.
    @discardableResult
    public mutating func collapseFullyRemovedBlocks(in structure: ModelStructure) -> [Int] {
        let pairs: [SubComponent: SubComponent] = [.w_norm1: .norm1, .w_norm1_context: .norm1_context, .w_norm: .norm]
        var collapsed: [Int] = []
        for b in Set(addresses.map(\.block)).sorted() where !isBlockRemoved(b) {
            guard b < structure.blocks.count else { continue }
            let slots = Set(structure.blocks[b].components.filter { $0 != .block }.map { pairs[$0] ?? $0 })
            let filled = Set(addresses.filter { $0.block == b }.map { pairs[$0.component] ?? $0.component })
            guard !slots.isEmpty, slots.isSubset(of: filled) else { continue }
            addresses.removeAll { $0.block == b }
            addresses.append(ComponentAddress(block: b, component: .block))
            collapsed.append(b)
        }
        addresses.sort()
        return collapsed
    }

    /// Whether the whole block is removed.
    public func isBlockRemoved(_ block: Int) -> Bool {
        addresses.contains(ComponentAddress(block: block, component: .block))
    }

    /// The lowest block index touched by the removal (PWP freezes everything before it).
    public var firstAffectedBlock: Int? { addresses.first?.block }

    /// Address strings, sorted (the form stored in a pruned model's config.json `hprune_removed`).
    public var strings: [String] { addresses.map(\.description) }

    public var isEmpty: Bool { addresses.isEmpty }
}
