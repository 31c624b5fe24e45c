// Progressive weight protection (PWP): which blocks stop receiving gradients during distillation.
// The official code freezes every module before the first removed block; hprune also offers a fraction of
// the blocks or an explicit list. A pruned block can never be frozen (it has nothing left to protect).

import ModelSpec

/// How `freeze` picks the frozen blocks.
public enum FreezePolicy: Sendable, Hashable {
    /// Blocks 0 ..< first block touched by the removal, plus the input embedders (the official code).
    case beforeFirstPruned
    /// The first ⌊fraction · |B|⌋ blocks, plus the input embedders when at least one block is frozen.
    case firstFraction(Double)
    /// Exactly these global block indices (embedders stay trainable).
    case blocks([Int])

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
    /// Frozen non-block module prefixes (e.g. `pos_embed.`).
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
        let embedders: [String]
        switch self {
        case .blocks: embedders = []
        default: embedders = frozen.first == 0 ? FreezePolicy.embedderPrefixes(structure) : []
        }
        return FreezeDecision(blocks: frozen, prefixes: embedders)
    }
}
