// Renders the `evaluate` metrics of several runs side by side as a Markdown table (`hprune report`), so results
// pages are produced from the ledger, not typed by hand.

import ArtifactStore
import Foundation

/// A Markdown table of `evaluate` metrics, one row per (run, model).
public enum ResultsTable {
    /// One run's label (usually its recipe name), id and recorded metrics.
    public struct Run: Sendable {
        public var label: String
        public var id: String
        public var metrics: [Metric]
        public init(label: String, id: String, metrics: [Metric]) {
            self.label = label; self.id = id; self.metrics = metrics
        }
    }

    /// The columns: (metric name, header, scale, decimals).
    static let columns: [(String, String, Double, Int)] = [
        ("params", "params", 1, 0),
        ("weight_bytes", "weights (MB)", 1e-6, 3),
        ("latency_sample", "latency / sample (ms)", 1, 1),
        ("prompt_accuracy", "prompt accuracy", 1, 3),
        ("frechet", "Fréchet (classifier features)", 1, 2),
        ("degradation", "degradation (%)", 1, 1),
        ("task_flow_loss", "flow loss", 1, 4),
    ]

    /// The table. Models come in the order their metrics were recorded; the first model of each run (the
    /// evaluate stage's reference) is shown for the first run only when `referenceOnce`. Columns no row has are left out.
    public static func markdown(_ runs: [Run], stage: String = "evaluate", referenceOnce: Bool = true) -> String {
        var rows: [[String]] = []
        var present = Set<String>()
        var notes: [String] = []
        for (r, run) in runs.enumerated() {
            let ms = run.metrics.filter { $0.stage == stage }
            var models: [String] = []
            var values: [String: [String: Double]] = [:]
            for m in ms {
                guard let dot = m.name.firstIndex(of: ".") else { continue }
                let model = String(m.name[..<dot]), metric = String(m.name[m.name.index(after: dot)...])
                if model == "classifier" {
                    if metric == "heldout_accuracy", r == 0 { notes.append("Classifier held-out accuracy: \(format(m.value, 3)) (run \(run.id)).") }
                    continue
                }
                if values[model] == nil { models.append(model) }
                values[model, default: [:]][metric] = m.value
            }
            for (i, model) in models.enumerated() {
                if referenceOnce, i == 0, r > 0 { continue }
                var row = [run.label, model]
                for (name, _, scale, digits) in columns {
                    if let v = values[model]?[name] { present.insert(name); row.append(format(v * scale, digits)) } else { row.append("") }
                }
                rows.append(row)
            }
        }
        let keep = columns.enumerated().filter { present.contains($0.element.0) }.map(\.offset)
        var out = "| run | model | " + keep.map { columns[$0].1 }.joined(separator: " | ") + " |\n"
        out += "|---|---|" + keep.map { _ in "---:|" }.joined() + "\n"
        for row in rows {
            out += "| " + ([row[0], row[1]] + keep.map { row[2 + $0] }).joined(separator: " | ") + " |\n"
        }
        if !notes.isEmpty { out += "\n" + notes.joined(separator: "\n") + "\n" }
        return out
    }

    /// One run's sample grids for the "Samples" section: the (model, link to its PNG) pairs to show, in order;
    /// `hasGrids` false when the run's evaluate stage wrote none.
    public struct SampleRun: Sendable {
        public var label: String
        public var id: String
        public var models: [(model: String, link: String)]
        public var hasGrids: Bool
        public init(label: String, id: String, models: [(model: String, link: String)], hasGrids: Bool) {
            self.label = label; self.id = id; self.models = models; self.hasGrids = hasGrids
        }
    }

    /// The "Samples" section: per run a one-row table of its models' grids; a run without grids says so.
    public static func samplesMarkdown(_ runs: [SampleRun]) -> String {
        var out = "## Samples\n"
        for run in runs {
            out += "\n### \(run.label)\n\n"
            guard run.hasGrids else {
                out += "No sample grids: run \(run.id)'s evaluate stage has no `images` setting.\n"
                continue
            }
            guard !run.models.isEmpty else { out += "Only the reference model's grid, shown above.\n"; continue }
            out += "| " + run.models.map(\.model).joined(separator: " | ") + " |\n"
            out += "|" + run.models.map { _ in "---|" }.joined() + "\n"
            out += "| " + run.models.map { "![\(run.label) \($0.model)](\($0.link))" }.joined(separator: " | ") + " |\n"
        }
        return out
    }

    /// The model names of one run's evaluate metrics, in recorded order (the table's order).
    public static func models(_ metrics: [Metric], stage: String = "evaluate") -> [String] {
        var seen: [String] = []
        for m in metrics where m.stage == stage {
            guard let dot = m.name.firstIndex(of: ".") else { continue }
            let model = String(m.name[..<dot])
            if model != "classifier", !seen.contains(model) { seen.append(model) }
        }
        return seen
    }

    static func format(_ v: Double, _ digits: Int) -> String {
        guard v.isFinite else { return "—" }
        return String(format: "%.\(digits)f", v)
    }
}
