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

    /// Per-group columns (`evaluate`'s `groups`: `prompt_accuracy.<group>` …), after the fixed ones, per group in
    /// the order the groups first occur: (metric prefix, header, scale, decimals).
    static let groupColumns: [(String, String, Double, Int)] = [
        ("prompt_accuracy", "prompt accuracy", 1, 3),
        ("frechet", "Fréchet", 1, 2),
        ("degradation", "degradation (%)", 1, 1),
    ]

    /// One row of the table: a model of a run and its metric values by metric name (unscaled).
    public struct Row: Sendable {
        public var label: String
        public var model: String
        public var values: [String: Double]
        /// The run's first (reference) model.
        public var reference: Bool = false
    }

    /// The rows and notes the table shows, and the columns some row has (in `columns` order).
    public struct Table: Sendable {
        public var rows: [Row]
        public var notes: [String]
        /// (metric name, header, scale, decimals) of the columns present.
        public var columns: [(name: String, header: String, scale: Double, digits: Int)]
    }

    /// The data of the table. Models come in the order their metrics were recorded; the first model of each run
    /// (the evaluate stage's reference) is included for the first run only when `referenceOnce`.
    public static func table(_ runs: [Run], stage: String = "evaluate", referenceOnce: Bool = true) -> Table {
        var rows: [Row] = []
        var present = Set<String>()
        var groups: [String] = []
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
                let v = values[model] ?? [:]
                for (name, _, _, _) in columns where v[name] != nil { present.insert(name) }
                for key in v.keys.sorted() {
                    for (prefix, _, _, _) in groupColumns where key.hasPrefix(prefix + ".") {
                        let g = String(key.dropFirst(prefix.count + 1))
                        if !groups.contains(g) { groups.append(g) }
                        present.insert(key)
                    }
                }
                rows.append(Row(label: run.label, model: model, values: v, reference: i == 0))
            }
        }
        var cols = columns.filter { present.contains($0.0) }.map { (name: $0.0, header: $0.1, scale: $0.2, digits: $0.3) }
        for g in groups {
            for (prefix, header, scale, digits) in groupColumns where present.contains("\(prefix).\(g)") {
                cols.append((name: "\(prefix).\(g)", header: "\(header), \(g)", scale: scale, digits: digits))
            }
        }
        return Table(rows: rows, notes: notes, columns: cols)
    }

    /// The rows of `runs` grouped by (label, model) — e.g. the seeds of one recipe — as Markdown: each cell the
    /// mean ± sample standard deviation over the group's runs (the mean alone for one run), with the number of
    /// runs; groups in first-occurrence order. With `referenceOnce`, the reference model only for the first label.
    public static func meanMarkdown(_ runs: [Run], stage: String = "evaluate", referenceOnce: Bool = true) -> String {
        let t = table(runs, stage: stage, referenceOnce: false)
        var keys: [String] = []
        var grouped: [String: [Row]] = [:]
        let firstLabel = t.rows.first?.label
        for row in t.rows where !(referenceOnce && row.reference && row.label != firstLabel) {
            let key = row.label + "\u{0}" + row.model
            if grouped[key] == nil { keys.append(key) }
            grouped[key, default: []].append(row)
        }
        var out = "| run | model | runs | " + t.columns.map(\.header).joined(separator: " | ") + " |\n"
        out += "|---|---|---:|" + t.columns.map { _ in "---:|" }.joined() + "\n"
        for key in keys {
            let rows = grouped[key] ?? []
            let cells = t.columns.map { c -> String in
                let xs = rows.compactMap { $0.values[c.name] }.map { $0 * c.scale }
                guard let stats = meanAndSD(xs) else { return "" }
                let (mean, sd) = stats
                return sd.map { format(mean, c.digits) + " ± " + format($0, c.digits) } ?? format(mean, c.digits)
            }
            out += "| " + ([rows[0].label, rows[0].model, String(rows.count)] + cells).joined(separator: " | ") + " |\n"
        }
        if !t.notes.isEmpty { out += "\n" + t.notes.joined(separator: "\n") + "\n" }
        return out
    }

    /// Mean and sample standard deviation (n − 1; nil for a single value); nil for no values.
    public static func meanAndSD(_ xs: [Double]) -> (Double, Double?)? {
        guard !xs.isEmpty else { return nil }
        let mean = xs.reduce(0, +) / Double(xs.count)
        guard xs.count > 1 else { return (mean, nil) }
        let ss = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return (mean, (ss / Double(xs.count - 1)).squareRoot())
    }

    /// The table as Markdown. Columns no row has are left out.
    public static func markdown(_ runs: [Run], stage: String = "evaluate", referenceOnce: Bool = true) -> String {
        let t = table(runs, stage: stage, referenceOnce: referenceOnce)
        var out = "| run | model | " + t.columns.map(\.header).joined(separator: " | ") + " |\n"
        out += "|---|---|" + t.columns.map { _ in "---:|" }.joined() + "\n"
        for row in t.rows {
            let cells = t.columns.map { c in row.values[c.name].map { format($0 * c.scale, c.digits) } ?? "" }
            out += "| " + ([row.label, row.model] + cells).joined(separator: " | ") + " |\n"
        }
        if !t.notes.isEmpty { out += "\n" + t.notes.joined(separator: "\n") + "\n" }
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

    public static func format(_ v: Double, _ digits: Int) -> String {
        guard v.isFinite else { return "—" }
        return String(format: "%.\(digits)f", v)
    }
}
