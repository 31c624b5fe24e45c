// Task metrics per group of labels (evaluate's `groups`): prompt accuracy and Fréchet distance of the samples whose
// prompt's label is in a group (e.g. the classes a distillation set had vs those it lacked), against the real
// held-out images of the same labels — so forgetting of unseen classes shows beside the overall numbers.

/// One group's task metrics.
public struct GroupTaskMetrics: Sendable, Equatable {
    public var name: String
    /// Samples in the group (their prompt's label is in it).
    public var samples: Int
    /// Share of those samples classified as their prompt's label.
    public var promptAccuracy: Double
    /// Fréchet distance of their classifier features to the real images of the group's labels.
    public var frechet: Double
}

public enum GroupedTaskMetricsError: Error, CustomStringConvertible, Equatable {
    case tooFewSamples(group: String, generated: Int, real: Int)
    case mismatch(String)

    public var description: String {
        switch self {
        case let .tooFewSamples(g, n, r):
            return "group '\(g)' has \(n) generated and \(r) real samples; the Fréchet distance needs at least 2 of each (add labels to the group or evaluate more samples)"
        case let .mismatch(s): return s
        }
    }
}

/// Per-group metrics. `predictions[i]` is the classifier's class for generated sample i, prompted with label
/// `labels[i]`; `features` [N·dim] are their hidden features; `realFeatures` [M·dim] with `realLabels` [M] are the
/// real held-out images'. Groups come back in the order given.
public func groupTaskMetrics(groups: [(name: String, labels: Set<Int>)], labels: [Int], predictions: [Int], features: [Float],
                             realFeatures: [Float], realLabels: [Int], dim: Int) throws -> [GroupTaskMetrics] {
    guard predictions.count == labels.count, features.count == labels.count * dim, realFeatures.count == realLabels.count * dim else {
        throw GroupedTaskMetricsError.mismatch("groupTaskMetrics: \(labels.count) labels, \(predictions.count) predictions, \(features.count) feature values, \(realLabels.count) real labels, \(realFeatures.count) real feature values at dim \(dim)")
    }
    func rows(_ x: [Float], _ keep: [Bool]) -> [Float] {
        var out: [Float] = []
        for (i, k) in keep.enumerated() where k { out += x[(i * dim)..<((i + 1) * dim)] }
        return out
    }
    return try groups.map { group in
        let inGroup = labels.map { group.labels.contains($0) }
        let realIn = realLabels.map { group.labels.contains($0) }
        let n = inGroup.filter { $0 }.count, r = realIn.filter { $0 }.count
        guard n >= 2, r >= 2 else { throw GroupedTaskMetricsError.tooFewSamples(group: group.name, generated: n, real: r) }
        let correct = zip(zip(labels, predictions), inGroup).filter { $0.1 && $0.0.0 == $0.0.1 }.count
        let fd = try frechetDistance(rows(features, inGroup), rows(realFeatures, realIn), dim: dim)
        return GroupTaskMetrics(name: group.name, samples: n, promptAccuracy: Double(correct) / Double(n), frechet: fd)
    }
}
