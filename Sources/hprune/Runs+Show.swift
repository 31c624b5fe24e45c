// `hprune runs` and `hprune show RUN`: the ledger of runs, and one run's stages, metrics and logs.
import ArgumentParser
import ArtifactStore
import Foundation
import Scheduler
import YAMLSupport

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List recorded runs, newest first.",
        discussion: "Example: hprune runs --store recipes/.hprune --limit 5")

    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "A recipe whose store (.hprune/ beside it) to read.") var recipe: String?
    @Option(help: "Show at most N runs.") var limit: Int = 20
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let store = try storeOptions.openStandalone(recipeHint: recipe)
        let runs = try store.ledger.runs(limit: limit)
        var rows: [[String: Any]] = []
        for r in runs {
            let stages = try store.ledger.stages(of: r.id)
            let counts = Dictionary(grouping: stages, by: \.status).mapValues(\.count)
            rows.append(["run": r.id.rawValue, "recipe": r.start.recipeName, "path": r.start.recipePath,
                         "status": r.status.rawValue, "started": ISO8601DateFormatter().string(from: r.startedAt),
                         "seconds": r.endedAt.map { $0.timeIntervalSince(r.startedAt) } ?? NSNull(),
                         "stages": Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) })])
        }
        if json { Terminal.printJSON(rows); return }
        if runs.isEmpty { print("no runs recorded in \(store.root.path)"); return }
        var table = [["RUN", "STARTED", "STATUS", "DURATION", "STAGES", "RECIPE"]]
        for (r, row) in zip(runs, rows) {
            let started = ISO8601DateFormatter.string(from: r.startedAt, timeZone: .current, formatOptions: [.withFullDate, .withTime, .withColonSeparatorInTime, .withSpaceBetweenDateAndTime])
            let duration = (row["seconds"] as? Double).map { ProgressBar.duration($0) } ?? "-"
            let counts = (row["stages"] as? [String: Int] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            table.append([r.id.rawValue, started, r.status.rawValue, duration, counts, TerminalText.escape(r.start.recipeName)])
        }
        for line in Self.columns(table) { print(line) }
    }

    /// Rows as aligned columns: each as wide as its widest cell, two spaces between, nothing ever cut.
    static func columns(_ rows: [[String]]) -> [String] {
        let n = rows.map(\.count).max() ?? 0
        let widths = (0..<n).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { c, cell in
                c == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[c] - cell.count + 2)
            }.joined()
        }
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one run: recipe, stages with keys and durations, metrics, and logs.",
        discussion: "Example: hprune show r-20261121 --log score")

    @OptionGroup var storeOptions: StoreOptions
    @Argument(help: "A run id (or a unique prefix).") var run: String
    @Option(help: "Print the log tail of STAGE.") var log: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let store = try storeOptions.openStandalone()
        let record: RunRecord
        do { record = try store.ledger.run(id: run) } catch {
            Terminal.err("error: \(error)")
            throw Exit.invalid
        }
        let stages = try store.ledger.stages(of: record.id)
        let metrics = try store.ledger.metrics(of: record.id)
        if let log {
            guard let s = stages.first(where: { $0.stage == log }) else {
                Terminal.err("error: run \(record.id) has no stage '\(log)' (stages: \(stages.map(\.stage).joined(separator: ", ")))")
                throw Exit.invalid
            }
            if !s.stdoutTail.isEmpty { print("--- stdout ---\n" + s.stdoutTail) }
            if !s.stderrTail.isEmpty { print("--- stderr ---\n" + s.stderrTail) }
            return
        }
        if json {
            Terminal.printJSON([
                "run": record.id.rawValue, "status": record.status.rawValue, "recipe": record.start.recipePath,
                "name": record.start.recipeName, "backend": record.start.backend, "host": record.start.host,
                "version": record.start.version, "started": ISO8601DateFormatter().string(from: record.startedAt),
                "stages": stages.map { s -> [String: Any] in
                    ["name": s.stage, "kind": s.kind, "status": s.status.rawValue, "key": s.key, "seconds": s.seconds,
                     "outputs": s.outputs.mapValues(\.hex), "error": s.error ?? NSNull()]
                },
                "metrics": metrics.map { ["stage": $0.stage, "name": $0.name, "value": $0.value, "unit": $0.unit] },
            ])
            return
        }
        print("run      \(record.id)  (\(record.status.rawValue))")
        print("recipe   \(TerminalText.escape(record.start.recipeName))  \(TerminalText.escape(record.start.recipePath))")
        print("started  \(record.startedAt)" + (record.endedAt.map { "  took \(ProgressBar.duration($0.timeIntervalSince(record.startedAt)))" } ?? ""))
        print("backend  \(record.start.backend) on \(record.start.host), hprune \(record.start.version)")
        print("stages:")
        let w = max(5, stages.map(\.stage.count).max() ?? 0)
        for s in stages {
            print("  \(s.stage.padding(toLength: w, withPad: " ", startingAt: 0))  \(s.kind.padding(toLength: 10, withPad: " ", startingAt: 0))  \(s.status.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0))  \(ProgressBar.duration(s.seconds).padding(toLength: 8, withPad: " ", startingAt: 0))  \(String(s.key.prefix(12)))")
            if let e = s.error { print("      " + TerminalText.escape(e, keepNewlines: true)) }
        }
        if !metrics.isEmpty {
            print("metrics:")
            for m in metrics { print("  \(m.stage).\(m.name) = \(Diff.format(m.value)) \(m.unit)") }
        }
    }
}
