// SGDistill (sensitivity-guided distillation): a per-block multiplier on the parameter updates, used only
// when the model was compressed by more than r_thres. `binary` is the released code (0 before the first
// removed block, 1 after); `inverse` is the paper's 1/ΔP, normalised as documented below.

import ModelSpec

/// The per-block update multipliers of SGDistill.
public struct SGDistillScaling: Sendable, Hashable, Codable {
    public enum Form: String, Sendable, Hashable, Codable, CaseIterable {
        /// 0 for blocks before the first removed block, 1 from it on (the official code).
        case binary
        /// m_i ∝ 1 / max(|ΔP_i|, ε · max_j |ΔP_j|) over trainable blocks, normalised to mean 1.
        case inverse
    }

    public var form: Form
    /// r_thres: scaling applies only when the removed parameter fraction is above it.
    public var threshold: Double
    /// ε, relative to the largest |ΔP| among trainable blocks: caps the largest multiplier at 1/ε times the smallest.
    public var epsilon: Double

    public init(form: Form = .inverse, threshold: Double = 0.25, epsilon: Double = 0.01) {
        self.form = form
        self.threshold = threshold
        self.epsilon = epsilon
    }

    /// Multipliers for every block ([|B|]), or nil when the compression ratio is not above the threshold
    /// (then every trainable block is updated normally).
    ///
    /// Removed blocks and `frozen` blocks get 0. For `inverse`, ΔP_i is the block's whole-block ΔP (or its largest
    /// component ΔP, see `Sensitivity.blockDelta`); a trainable block without a score gets the mean raw multiplier
    /// of the scored ones. The mean over trainable blocks is then 1, so the learning rate keeps its meaning.
    /// - Throws: `CompressionError` when `inverse` has no scores, or no ΔP for any trainable block.
    public func multipliers(structure: ModelStructure, removal: Removal, frozen: Set<Int>, compressionRatio: Double,
                            sensitivity: Sensitivity?) throws -> [Double]? {
        guard compressionRatio > threshold else { return nil }
        let n = structure.blocks.count
        let trainable = (0..<n).filter { !removal.isBlockRemoved($0) && !frozen.contains($0) }
        var m = [Double](repeating: 0, count: n)
        switch form {
        case .binary:
            let first = removal.firstAffectedBlock ?? n
            for i in trainable where i >= first { m[i] = 1 }
        case .inverse:
            guard let sensitivity else {
                throw CompressionError("sensitivity.form", "inverse scaling needs the `scores` input (a Sensitivity)",
                                       fix: "connect `scores:` to the score stage, or use `form: binary`")
            }
            let deltas = trainable.map { sensitivity.blockDelta($0).map(abs) }
            guard let maxD = deltas.compactMap({ $0 }).max(), maxD > 0 else {
                throw CompressionError("scores", "no trainable block has a non-zero ΔP", fix: "score whole blocks, or use `form: binary`")
            }
            let floor = epsilon * maxD
            var raw: [Double] = deltas.map { d in d.map { 1 / max($0, floor) } ?? 0 }
            let known = raw.filter { $0 > 0 }
            let meanKnown = known.reduce(0, +) / Double(known.count)
            raw = raw.map { $0 > 0 ? $0 : meanKnown }  // unscored trainable block: the average multiplier
            let mean = raw.reduce(0, +) / Double(raw.count)
            for (k, i) in trainable.enumerated() { m[i] = raw[k] / mean }
        }
        return m
    }
}
