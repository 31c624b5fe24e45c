// Degradation as the HierarchicalPrune paper reports it: the mean of the relative drops of the task metrics
// (GenEval and HPSv2 there; prompt accuracy and Fréchet distance on hprune's test beds) against the original model.

/// A task metric that enters the degradation, and which way is better.
public enum TaskMetric: String, Sendable, Hashable, CaseIterable, Codable {
    /// Share of samples classified as their prompt's label (higher is better).
    case promptAccuracy = "prompt_accuracy"
    /// Fréchet distance of classifier features to the real data (lower is better).
    case frechet

    public var higherIsBetter: Bool { self != .frechet }
}

public enum Degradation {
    /// 100 · mean over `metrics` of the relative drop against `reference`: (ref − m)/ref for a higher-is-better
    /// metric, (m − ref)/ref for a lower-is-better one. A metric missing from either side, or with a zero
    /// reference, is left out; nil when none is left.
    ///
    /// ```swift
    /// // The paper's "All" row (30 %): GenEval 0.71 → 0.62, HPSv2 30.29 → 26.29: (12.7 % + 13.2 %) / 2 ≈ 12.9 %.
    /// Degradation.percent(reference: ["a": 0.71, "b": 30.29], model: ["a": 0.62, "b": 26.29], higherIsBetter: ["a": true, "b": true])
    /// ```
    public static func percent(reference: [String: Double], model: [String: Double], higherIsBetter: [String: Bool]) -> Double? {
        var drops: [Double] = []
        for (name, higher) in higherIsBetter.sorted(by: { $0.key < $1.key }) {
            guard let r = reference[name], let m = model[name], r != 0, r.isFinite, m.isFinite else { continue }
            drops.append((higher ? r - m : m - r) / abs(r))
        }
        guard !drops.isEmpty else { return nil }
        return 100 * drops.reduce(0, +) / Double(drops.count)
    }

    /// `percent` over task metrics.
    public static func percent(reference: [TaskMetric: Double], model: [TaskMetric: Double], metrics: [TaskMetric]) -> Double? {
        percent(reference: Dictionary(uniqueKeysWithValues: reference.map { ($0.key.rawValue, $0.value) }),
                model: Dictionary(uniqueKeysWithValues: model.map { ($0.key.rawValue, $0.value) }),
                higherIsBetter: Dictionary(uniqueKeysWithValues: metrics.map { ($0.rawValue, $0.higherIsBetter) }))
    }
}
