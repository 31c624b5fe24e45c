// Positional Weight Preservation (PWP): which modules stop receiving gradients during distillation.
// The official code freezes every module registered before the first removed one (`distil_sd3.py`: walk
// `named_modules()` in order, frozen until the first identity module) — the embedders, the blocks before the
// first touched block, and that block's modules before its first removed one. hprune also offers a fraction of
// the blocks or an explicit list. A removed block can never be frozen (it has nothing left to protect).

import ModelSpec

/// How `freeze` picks the frozen blocks.
public enum FreezePolicy: Sendable, Hashable {
    /// Every module registered before the first removed one (the official code): the input embedders, blocks
    /// 0 ..< the first touched block, and — when that block is only partly removed — its modules that come before
    /// its first removed sub-component in diffusers' registration order (`moduleOrder`).
    case beforeFirstPruned
    /// The first ⌊fraction · |B|⌋ blocks, plus the input embedders when at least one block is frozen.
    case firstFraction(Double)
    /// Exactly these global block indices (embedders stay trainable).
    case blocks([Int])

    /// The policies by name (`freeze`'s `policy`).
    public enum Kind: String, CaseIterable, Sendable, Hashable, Decodable {
        case beforeFirstPruned = "before-first-pruned"
        case firstFraction = "first-fraction"
        case blocks
    }

    /// The sub-modules of a block in diffusers' registration order (`__init__` of `JointTransformerBlock`,
    /// `FluxTransformerBlock`, `FluxSingleTransformerBlock`, diffusers 0.42), each with the sub-components whose
    /// removal replaces it by an identity module.
    public static func moduleOrder(_ kind: BlockKind) -> [(module: String, replacedBy: [SubComponent])] {
        switch kind {
        case .joint, .double:
            var order: [(module: String, replacedBy: [SubComponent])] = [
                ("norm1", [.norm1, .w_norm1]), ("norm1_context", [.norm1_context, .w_norm1_context]), ("attn", [.attn])]
            if kind == .joint { order.append(("attn2", [.attn])) }
            return order + [("norm2", []), ("ff", [.ff]), ("norm2_context", []), ("ff_context", [.ff_context])]
        case .single:
            return [("norm", [.norm, .w_norm]), ("proj_mlp", [.proj_mlp_out]), ("act_mlp", []), ("proj_out", [.proj_mlp_out]), ("attn", [.attn])]
        }
    }

    /// Tensor-name prefixes (`transformer_blocks.12.norm1.`) of the modules of `block` registered before its first
    /// removed sub-component, keeping only modules that own tensors; empty when the block is removed whole or
    /// untouched.
    public static func modulesBeforeFirstRemoval(block b: Int, structure: ModelStructure, removal: Removal) -> [String] {
        let spec = structure.blocks[b]
        let removed = Set(removal.addresses.filter { $0.block == b }.map(\.component))
        guard !removed.isEmpty, !removed.contains(.block) else { return [] }
        let order = moduleOrder(spec.kind)
        guard let first = order.firstIndex(where: { !removed.isDisjoint(with: $0.replacedBy) }) else { return [] }
        return order[..<first].map { spec.prefix + "." + $0.module + "." }
            .filter { p in structure.tensors.contains { $0.name.hasPrefix(p) } }
    }

    /// Tensor-name prefixes of the modules that run before block 0 (the input embedders).
    public static func embedderPrefixes(_ structure: ModelStructure) -> [String] {
        switch structure.config.architecture {
        case .sd3: return ["pos_embed.", "time_text_embed.", "context_embedder."]
        case .flux: return ["x_embedder.", "time_text_embed.", "context_embedder."]
        }
    }
}

/// The frozen part of a model.
public struct FreezeDecision: Sendable, Hashable, Codable {
    /// Frozen global block indices, ascending.
    public var blocks: [Int]
    /// Frozen non-block module prefixes (e.g. `pos_embed.`, or `transformer_blocks.12.norm1.` inside a partly
    /// removed block).
    public var prefixes: [String]

    public init(blocks: [Int], prefixes: [String]) {
        self.blocks = blocks
        self.prefixes = prefixes
    }

    /// Whether the tensor `name` is frozen under this decision.
    public func isFrozen(_ name: String, structure: ModelStructure) -> Bool {
        if prefixes.contains(where: { name.hasPrefix($0) }) { return true }
        return blocks.contains { name.hasPrefix(structure.blocks[$0].prefix + ".") }
    }
}

extension FreezePolicy {
    /// Decides the frozen blocks of a model with `removal` already applied.
    /// - Throws: `CompressionError` when the policy would freeze a pruned block, names a block the model does not
    ///   have, or (before-first-pruned) nothing was pruned.
    public func decide(structure: ModelStructure, removal: Removal) throws -> FreezeDecision {
        let n = structure.blocks.count
        let touched = Set(removal.addresses.map(\.block))
        var frozen: [Int]
        switch self {
        case .beforeFirstPruned:
            guard let first = removal.firstAffectedBlock else {
                throw CompressionError("policy", "before-first-pruned needs a pruned model, but nothing is removed",
                                       fix: "freeze the output of a `prune` stage, or use `policy: first-fraction` / `blocks:`")
            }
            frozen = Array(0..<first)
        case .firstFraction(let f):
            guard f >= 0, f <= 1 else {
                throw CompressionError("fraction", "must be in [0, 1], got \(f)", fix: "e.g. `fraction: 0.5` freezes the first half")
            }
            frozen = Array(0..<Int((f * Double(n)).rounded(.down)))
        case .blocks(let list):
            if let bad = list.first(where: { $0 < 0 || $0 >= n }) {
                throw CompressionError("blocks", "block \(bad) does not exist; the model has blocks 0..\(n - 1)",
                                       fix: "list blocks below \(n)")
            }
            frozen = Array(Set(list)).sorted()
        }
        let clash = frozen.filter { touched.contains($0) }
        if !clash.isEmpty {
            let what = clash.map { b in removal.isBlockRemoved(b) ? "blocks.\(b)" : "blocks.\(b) (partly: "
                + removal.addresses.filter { $0.block == b }.map(\.component.rawValue).joined(separator: ", ") + ")" }
            throw CompressionError("blocks", "cannot freeze pruned block\(clash.count == 1 ? "" : "s") " + what.joined(separator: ", "),
                                   fix: "freeze only blocks before the first pruned one (\(removal.firstAffectedBlock.map(String.init) ?? "none")), e.g. `policy: before-first-pruned`")
        }
        var prefixes: [String]
        switch self {
        case .blocks: prefixes = []
        case .firstFraction: prefixes = frozen.first == 0 ? FreezePolicy.embedderPrefixes(structure) : []
        case .beforeFirstPruned:
            // Everything registered before the first identity module: the embedders always (they come first), and
            // the first touched block's modules before its first removed one.
            prefixes = FreezePolicy.embedderPrefixes(structure)
            if let first = removal.firstAffectedBlock {
                prefixes += FreezePolicy.modulesBeforeFirstRemoval(block: first, structure: structure, removal: removal)
            }
        }
        return FreezeDecision(blocks: frozen, prefixes: prefixes)
    }
}
