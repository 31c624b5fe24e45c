// `evaluate`'s `groups` option: the classifier's task metrics per named group of labels, e.g.
// `groups: { seen: [0, 1, 2, 3, 4], unseen: [5, 6, 7, 8, 9] }` → `<model>.prompt_accuracy.seen`,
// `<model>.frechet.unseen`, `<model>.degradation.seen` …, so forgetting of classes a distillation set lacked
// shows beside the overall numbers. Additive: without `groups` the stage's params, key and outputs are unchanged.
// The numerics are `groupTaskMetrics` (Classifier); this file holds the schema, the check and the glue.

import Classifier
import Compression
import Scheduler
import StageGraph
import YAMLSupport

extension EvaluateStage {
    static let groupsField = Field("groups", .dictionary(.list(.integer(min: 0), minCount: 1)),
        doc: "With `classifier`: name → labels, e.g. `{seen: [0, 1, 2, 3, 4], unseen: [5, 6, 7, 8, 9]}`. Per group, the task metrics of the samples whose prompt's label is in it: `prompt_accuracy.<name>`, `frechet.<name>` (against the real images of `data` with those labels) and `degradation.<name>` (vs the first model's group values). The overall metrics are unchanged.")

    /// The recipe's groups in recipe order (empty without `groups`).
    static func labelGroups(_ params: ParamValue) -> [(name: String, labels: Set<Int>)] {
        (params["groups"]?.entries ?? []).map { ($0.0, Set(($0.1.list ?? []).compactMap(\.int))) }
    }

    static func checkGroups(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        guard let groups = params["groups"] else { return }
        let mark = node["groups"]?.mark ?? node.mark
        if params["classifier"] == nil {
            checker.error("'groups' splits the classifier's task metrics by label; it needs 'classifier'", mark,
                          hint: "add `classifier: { data: <training dataset> }` and 'task' to 'metrics', or remove 'groups'")
        }
        if groups.entries?.isEmpty ?? true {
            checker.error("'groups' needs at least one group", mark, hint: "e.g. `groups: { seen: [0, 1, 2, 3, 4], unseen: [5, 6, 7, 8, 9] }`")
        }
        for (name, _) in groups.entries ?? [] where name.isEmpty || name.contains(".") {
            checker.error("group name '\(name)' is not usable in a metric name (empty or with a '.')", node["groups"]?[name]?.mark ?? mark,
                          hint: "use letters, digits, '_' or '-'")
        }
    }

    /// The per-group metrics of one model (`prompt_accuracy.<g>`, `frechet.<g>`, `degradation.<g>`); the first
    /// model's group values become `reference` and the base of every later model's group degradation.
    func groupMetrics(_ ctx: StageContext, _ groups: [(name: String, labels: Set<Int>)], classifier: TrainedClassifier,
                      labels: [Int], predictions: [Int], features: [Float], reference: inout [String: [TaskMetric: Double]]?,
                      degradationOf: [TaskMetric]) throws -> [(String, Double, String)] {
        guard !groups.isEmpty else { return [] }
        let per: [GroupTaskMetrics]
        do {
            per = try groupTaskMetrics(groups: groups, labels: labels, predictions: predictions, features: features,
                                       realFeatures: classifier.realFeatures, realLabels: labels, dim: classifier.model.hidden)
        } catch {
            throw ctx.failure("'groups' of stage '\(ctx.stage.name)' (\(ctx.stage.mark)): \(error)",
                              log: "fix: give each group labels that occur in the first `samples` of 'data'")
        }
        let values = Dictionary(uniqueKeysWithValues: per.map { ($0.name, [TaskMetric.promptAccuracy: $0.promptAccuracy, .frechet: $0.frechet]) })
        let ref = reference ?? values
        reference = ref
        var out: [(String, Double, String)] = []
        for g in per {
            out.append(("prompt_accuracy.\(g.name)", g.promptAccuracy, ""))
            out.append(("frechet.\(g.name)", g.frechet, ""))
            let d = Degradation.percent(reference: ref[g.name] ?? [:], model: values[g.name] ?? [:], metrics: degradationOf) ?? 0
            out.append(("degradation.\(g.name)", d, "%"))
        }
        return out
    }
}
