// Which parameters a training loop updates, and how strongly: PWP-frozen blocks and modules never change,
// buffers are not parameters, and SGDistill gives each block (or scored sub-component) an update multiplier
// (0 = not updated at all).
//
// What SGDistill scales, precisely: the AdamW *update* of every parameter of block i (its step size and its
// decoupled weight decay) is multiplied by m_i — i.e. block i trains with learning rate lr·m_i. The
// gradients themselves are not scaled: Adam divides the first moment by the root of the second, so a
// constant factor on a parameter's gradients would cancel (up to eps) and change nothing. Gradient clipping
// sees the unscaled gradients. Parameters outside the blocks (embedders, norm_out, proj_out) use m = 1.

import ModelSpec

/// Trainable parameter names with their per-parameter learning-rate multipliers.
public struct TrainableParameters: Sendable, Hashable {
    /// Parameter name → update multiplier (> 0). Names absent here get no gradient and never change.
    public var multipliers: [String: Double]

    public init(multipliers: [String: Double]) { self.multipliers = multipliers }

    /// The parameters of `structure` that are present (`loaded`), not buffers, not frozen, and whose block
    /// multiplier (SGDistill, `blockMultipliers[i]`) is above 0.
    ///
    /// - Parameters:
    ///   - frozenBlocks: PWP-frozen global block indices.
    ///   - frozenPrefixes: PWP-frozen module prefixes (`pos_embed.`).
    ///   - blockMultipliers: [|B|] SGDistill multipliers, or nil (every block 1).
    ///   - componentMultipliers: SGDistill per-component multipliers: a tensor a listed component owns
    ///     (`ModelStructure.tensorNames(of:)`) uses it instead of its block's (the smallest, when two listed
    ///     components own it, e.g. `norm1` and `w_norm1`).
    public init(structure: ModelStructure, loaded: Set<String>, frozenBlocks: Set<Int> = [], frozenPrefixes: [String] = [],
                blockMultipliers: [Double]? = nil, componentMultipliers: [ComponentAddress: Double] = [:]) {
        var out: [String: Double] = [:]
        let prefixes = structure.blocks.map { ($0.index, $0.prefix + ".") }
        var byTensor: [String: Double] = [:]
        for (a, m) in componentMultipliers {
            for name in (try? structure.tensorNames(of: a)) ?? [] { byTensor[name] = Swift.min(byTensor[name] ?? m, m) }
        }
        for spec in structure.tensors where !spec.isBuffer && loaded.contains(spec.name) {
            if frozenPrefixes.contains(where: { spec.name.hasPrefix($0) }) { continue }
            var m = 1.0
            if let (i, _) = prefixes.first(where: { spec.name.hasPrefix($0.1) }) {
                if frozenBlocks.contains(i) { continue }
                if let bm = blockMultipliers, i < bm.count { m = bm[i] }
                if let cm = byTensor[spec.name] { m = cm }
            }
            if m > 0, m.isFinite { out[spec.name] = m }
        }
        multipliers = out
    }

    public func contains(_ name: String) -> Bool { multipliers[name] != nil }

    /// Names, sorted.
    public var names: [String] { multipliers.keys.sorted() }

    /// Number of trainable elements.
    public func elementCount(_ structure: ModelStructure) -> Int {
        structure.tensors.filter { multipliers[$0.name] != nil }.reduce(0) { $0 + $1.elementCount }
    }
}
