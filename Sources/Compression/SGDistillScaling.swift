// SGDistill (sensitivity-guided distillation): a per-block multiplier on the parameter updates, used only
// when the model was compressed by more than r_thres. `binary` is the released code (0 before the first
// removed block, 1 after); `inverse` is the paper's 1/ΔP, normalised as documented below — per sub-component
// where the scores measured sub-components (`multipliers(…, frozenPrefixes:)`).

import ModelSpec

/// The per-block update multipliers of SGDistill.
public struct SGDistillScaling: Sendable, Hashable, Codable {
    public enum Form: String, Sendable, Hashable, Codable, CaseIterable {
        /// 0 for blocks before the first removed block, 1 from it on (the official code).
        case binary
        /// m_i ∝ 1 / max(ΔP_i, ε · max_j ΔP_j) over trainable blocks, normalised to mean 1, then capped.
        case inverse
    }

    public var form: Form
    /// r_thres: scaling applies only when the removed parameter fraction is above it.
    public var threshold: Double
    /// ε, relative to the largest positive ΔP among trainable blocks: the floor under ΔP, so the largest raw
    /// multiplier is at most 1/ε times the smallest.
    public var epsilon: Double
    /// The largest multiplier after normalisation (m_i = min(m_i, cap)): a block whose removal barely changes the
    /// output — or improves it — would otherwise train at up to |B|× the learning rate.
    public var cap: Double

    public init(form: Form = .inverse, threshold: Double = 0.25, epsilon: Double = 0.01, cap: Double = SGDistillScaling.defaultCap) {
        self.form = form
        self.threshold = threshold
        self.epsilon = epsilon
        self.cap = cap
    }

    /// 4: no block trains at more than 4× the learning rate [open: the paper gives no bound].
    public static let defaultCap: Double = 4

    /// Multipliers for every block ([|B|]), or nil when the compression ratio is not above the threshold
    /// (then every trainable block is updated normally).
    ///
    /// Removed blocks and `frozen` blocks get 0. For `inverse`, ΔP_i is the block's whole-block ΔP (or its largest
    /// component ΔP, see `Sensitivity.blockDelta`). ΔP is a quality DROP, so a sensitive block has a large positive
    /// ΔP and gets a small multiplier. A ΔP at or below the floor ε·max_j ΔP_j — near zero, or negative (removing the
    /// block *improves* the score: the least sensitive of all) — is raised to the floor, so it gets the largest
    /// multiplier, never a negative or infinite one. A trainable block without a score gets the mean raw multiplier
    /// of the scored ones. The raw multipliers are normalised to mean 1 over the trainable blocks (so the learning
    /// rate keeps its meaning) and then capped at `cap` (after which the mean may be below 1).
    /// With no trainable block at all every multiplier is 0 (only parameters outside the blocks train).
    /// - Throws: `CompressionError` when `inverse` has no scores, or trainable blocks exist but none has a positive ΔP.
    public func multipliers(structure: ModelStructure, removal: Removal, frozen: Set<Int>, compressionRatio: Double,
                            sensitivity: Sensitivity?) throws -> [Double]? {
        guard compressionRatio > threshold else { return nil }
        let n = structure.blocks.count
        let trainable = (0..<n).filter { !removal.isBlockRemoved($0) && !frozen.contains($0) }
        var m = [Double](repeating: 0, count: n)
        // Every block removed or frozen (e.g. PWP froze all blocks before a pruned tail): nothing to scale.
        guard !trainable.isEmpty else { return m }
        switch form {
        case .binary:
            let first = removal.firstAffectedBlock ?? n
            for i in trainable where i >= first { m[i] = 1 }
        case .inverse:
            guard let sensitivity else {
                throw CompressionError("sensitivity.form", "inverse scaling needs the `scores` input (a Sensitivity)",
                                       fix: "connect `scores:` to the score stage, or use `form: binary`")
            }
            let deltas = trainable.map { sensitivity.blockDelta($0) }
            guard let maxD = deltas.compactMap({ $0 }).max(), maxD > 0 else {
                throw CompressionError("scores", "no trainable block has a positive ΔP (a removal that hurts)",
                                       fix: "score whole blocks, or use `form: binary`")
            }
            let floor = epsilon * maxD
            var raw: [Double] = deltas.map { d in d.map { 1 / Swift.max($0, floor) } ?? 0 }
            let known = raw.filter { $0 > 0 }
            let meanKnown = known.reduce(0, +) / Double(known.count)
            raw = raw.map { $0 > 0 ? $0 : meanKnown }  // unscored trainable block: the average multiplier
            let mean = raw.reduce(0, +) / Double(raw.count)
            for (k, i) in trainable.enumerated() { m[i] = Swift.min(raw[k] / mean, cap) }
        }
        return m
    }

    /// The multipliers of every block and, where the scores measured sub-components, of each trainable scored
    /// component (`inverse` only), or nil when the compression ratio is not above the threshold.
    ///
    /// Units: a trainable block (not removed, not frozen) with scored components that are not removed and not wholly
    /// frozen by `frozenPrefixes` contributes those components as units, with their own ΔP(i, c); any other
    /// trainable block is one unit with its block ΔP (`Sensitivity.blockDelta`). The rules of the block form apply
    /// to the units: floor ε·max ΔP over the units (ΔP at or below it, negative included, counts as the floor),
    /// m ∝ 1/ΔP, an unscored unit gets the mean raw multiplier, normalisation to mean 1 over the units, then the cap.
    /// A block that has component units keeps a block value, 1/max(ΔP_block, floor) on the same normalisation and
    /// cap, for its parameters no scored component owns (norms, modulation). With block entries only (or `binary`)
    /// this is exactly `multipliers(structure:removal:frozen:compressionRatio:sensitivity:)` with no components.
    public func unitMultipliers(structure: ModelStructure, removal: Removal, frozen: Set<Int>, frozenPrefixes: [String] = [],
                                compressionRatio: Double, sensitivity: Sensitivity?) throws -> (blocks: [Double], components: [ComponentAddress: Double])? {
        let n = structure.blocks.count
        let trainable = (0..<n).filter { !removal.isBlockRemoved($0) && !frozen.contains($0) }
        var comps: [Int: [(ComponentAddress, Double)]] = [:]
        if form == .inverse, let sensitivity {
            for e in sensitivity.entries {
                guard let d = e.deltaP, d.isFinite, let a = try? ComponentAddress(parsing: e.address), a.component != .block,
                      trainable.contains(a.block), !removal.isRemoved(block: a.block, a.component),
                      let names = try? structure.tensorNames(of: a), !names.isEmpty,
                      !names.allSatisfy({ name in frozenPrefixes.contains { name.hasPrefix($0) } }) else { continue }
                comps[a.block, default: []].append((a, d))
            }
        }
        guard !comps.isEmpty else {
            return try multipliers(structure: structure, removal: removal, frozen: frozen, compressionRatio: compressionRatio,
                                   sensitivity: sensitivity).map { ($0, [:]) }
        }
        guard compressionRatio > threshold, let sensitivity else { return nil }
        // Units in block order: (block, component or nil for the whole block, ΔP).
        var units: [(block: Int, component: ComponentAddress?, delta: Double?)] = []
        for i in trainable {
            if let cs = comps[i] { units += cs.sorted { $0.0 < $1.0 }.map { (i, $0.0, $0.1) } } else { units.append((i, nil, sensitivity.blockDelta(i))) }
        }
        guard let maxD = units.compactMap(\.delta).max(), maxD > 0 else {
            throw CompressionError("scores", "no trainable block or component has a positive ΔP (a removal that hurts)",
                                   fix: "score whole blocks, or use `form: binary`")
        }
        let floor = epsilon * maxD
        let known = units.compactMap(\.delta).map { 1 / Swift.max($0, floor) }
        let meanKnown = known.reduce(0, +) / Double(known.count)
        let raw = units.map { u in u.delta.map { 1 / Swift.max($0, floor) } ?? meanKnown }
        let mean = raw.reduce(0, +) / Double(raw.count)
        var blocks = [Double](repeating: 0, count: n)
        var components: [ComponentAddress: Double] = [:]
        for (u, r) in zip(units, raw) {
            if let c = u.component { components[c] = Swift.min(r / mean, cap) } else { blocks[u.block] = Swift.min(r / mean, cap) }
        }
        for i in comps.keys {
            let r = sensitivity.blockDelta(i).map { 1 / Swift.max($0, floor) } ?? meanKnown
            blocks[i] = Swift.min(r / mean, cap)
        }
        return (blocks, components)
    }
}
