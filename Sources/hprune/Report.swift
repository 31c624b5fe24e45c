// `hprune report RUN…`: the `evaluate` metrics of several runs side by side as a Markdown table (Docs/results.md),
// with `--images DIR` their sample grids copied out of the store and linked in a "Samples" section, and with
// `--html OUT.html` one self-contained page of the runs (Stages/HTMLReport.swift).
import ArgumentParser
import ArtifactStore
import Foundation
import PNGSupport
import Stages

struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render the evaluate metrics of runs side by side as a Markdown table.",
        discussion: """
            Each RUN is a run id (or unique prefix); rows are labelled with the run's recipe name. The first model
            of each evaluate stage (its reference, e.g. the teacher) is shown for the first run only.
            With --images DIR, each run's sample grids (the evaluate stage's `samples` output, written when the
            stage sets `images`) are copied to DIR as <recipe-name>-<model>.png and a "Samples" section links
            them, relative to --markdown-dir (where the Markdown will live; default: the current directory).
            Examples:
              hprune report r-20261121-2210-ab12 r-20261121-2215-cd34 --store recipes/digits/.hprune
              hprune report r-…-ab12 r-…-cd34 --store recipes/digits/.hprune --images Docs/results --markdown-dir Docs > table.md
            With --mean, the runs of one recipe name (e.g. `--set seed=1`, `seed=2`) become one row per model whose
            cells are mean ± sample standard deviation over those runs, with their count.
            With --html OUT.html, one self-contained page (no scripts, no network; plots as inline SVG, grids as data:
            URIs) is also written: per run the ΔP heat map over block × component with the removals crossed out, the
            position weights, frozen blocks, SGDistill multipliers, loss curves and sample grids, and the metrics
            table of all runs with each value's difference from the first row. The Markdown is still printed.
              hprune report r-…-ab12 r-…-cd34 --store recipes/digits/.hprune --html Docs/results/report.html > /dev/null
            """)

    @Argument(help: "Run ids (or unique prefixes), in the order of the rows.") var runs: [String]
    @OptionGroup var storeOptions: StoreOptions
    @Option(help: "The evaluate stage's name.") var stage = "evaluate"
    @Flag(help: "Show every run's reference model, not only the first run's.") var allReferences = false
    @Flag(help: "One row per (recipe name, model) — e.g. the seeds of each recipe — with mean ± sample sd over its runs.")
    var mean = false
    @Option(help: ArgumentHelp("Copy each run's sample grids into this folder (created) and add a Samples section.", valueName: "DIR"))
    var images: String?
    @Option(help: ArgumentHelp("The folder the Markdown will be saved in: image links are relative to it.", valueName: "DIR"))
    var markdownDir = "."
    @Option(help: ArgumentHelp("Also write one self-contained HTML page of the runs to this file.", valueName: "OUT.html"))
    var html: String?

    func run() async throws {
        let store = try storeOptions.openStandalone()
        var out: [ResultsTable.Run] = []
        var records: [RunRecord] = []
        for ref in runs {
            let record: RunRecord
            do { record = try store.ledger.run(id: ref) } catch {
                Terminal.err("error: no run '\(ref)' in the store (\(error)); list them with `hprune runs`")
                throw ExitCode(2)
            }
            records.append(record)
            out.append(ResultsTable.Run(label: record.start.recipeName, id: record.id.rawValue,
                                        metrics: try store.ledger.metrics(of: record.id)))
        }
        var markdown = mean ? ResultsTable.meanMarkdown(out, stage: stage, referenceOnce: !allReferences)
                            : ResultsTable.markdown(out, stage: stage, referenceOnce: !allReferences)
        if let images {
            let samples = try copySamples(store, records, out, into: URL(fileURLWithPath: images))
            markdown += "\n" + ResultsTable.samplesMarkdown(samples)
        }
        if let html { try writeHTML(store, records, to: html) }
        print(markdown, terminator: "")
    }

    /// Gathers each run's data and writes the page atomically (temp file, then rename).
    func writeHTML(_ store: ArtifactStore, _ records: [RunRecord], to path: String) throws {
        var data: [HTMLReport.RunData] = []
        for record in records {
            do { data.append(try HTMLReport.gather(store: store, record: record, evaluateStage: stage)) } catch {
                Terminal.err("error: \(error)")
                throw ExitCode(1)
            }
        }
        let url = URL(fileURLWithPath: path)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(HTMLReport.page(data, evaluateStage: stage).utf8).write(to: url, options: .atomic)
        } catch {
            Terminal.err("error: cannot write the HTML report '\(path)': \(error.localizedDescription); check the folder exists and is writable")
            throw ExitCode(1)
        }
        Terminal.err("wrote \(path)")
    }

    /// Copies the runs' `<model>.png` grids that the Samples section shows to `dir` (atomically) and returns the
    /// links for the Markdown. A grid identical to one already copied (e.g. the same pruned model in several
    /// rows) is not copied again: its link points at the first copy.
    func copySamples(_ store: ArtifactStore, _ records: [RunRecord], _ runs: [ResultsTable.Run], into dir: URL) throws -> [ResultsTable.SampleRun] {
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            Terminal.err("error: cannot create the images folder '\(dir.path)': \(PlainError.describe(error))")
            throw ExitCode(1)
        }
        var used = Set<String>()
        var copied: [Digest: String] = [:]
        var result: [ResultsTable.SampleRun] = []
        for (index, (record, run)) in zip(records, runs).enumerated() {
            let execution = try store.ledger.stages(of: record.id).last { $0.stage == stage }
            guard let digest = execution?.outputs["samples"] else {
                Terminal.err("note: run \(record.id.rawValue) (\(run.label)) has no sample grids (its '\(stage)' stage has no `images`)")
                result.append(ResultsTable.SampleRun(label: run.label, id: run.id, models: [], hasGrids: false))
                continue
            }
            // Unique file names, even for two runs of one recipe (e.g. seeds): the later ones get their run id.
            var prefix = Self.safeName(run.label)
            if used.contains(prefix) { prefix += "-" + Self.safeName(run.id) }
            used.insert(prefix)
            let tree: Tree
            do { tree = try store.readTree(digest) } catch {
                Terminal.err("error: run \(record.id.rawValue): the sample grids (\(digest.short)) cannot be read: \(error); `hprune run` the recipe again to recreate them")
                throw ExitCode(1)
            }
            var grids: [String: Digest] = [:]
            for entry in tree.entries where entry.path.hasSuffix(".png") && !entry.path.contains("/") {
                grids[String(entry.path.dropLast(4))] = entry.digest
            }
            // Models in the table's order, then any others; the reference only for the first run (as the table).
            let ordered = ResultsTable.models(run.metrics, stage: stage).filter { grids[$0] != nil }
            var shown = ordered + grids.keys.filter { !ordered.contains($0) }.sorted()
            if !allReferences, index > 0, !shown.isEmpty { shown.removeFirst() }
            var links: [(model: String, link: String)] = []
            for model in shown {
                guard let digest = grids[model] else { continue }
                let name = copied[digest] ?? "\(prefix)-\(Self.safeName(model)).png"
                if copied[digest] == nil {
                    let bytes = [UInt8](try store.data(digest))
                    try PNGImage.writeAtomically(bytes, to: dir.appendingPathComponent(name))
                    copied[digest] = name
                }
                links.append((model, Self.relativePath(dir.appendingPathComponent(name), from: URL(fileURLWithPath: markdownDir))))
            }
            result.append(ResultsTable.SampleRun(label: run.label, id: run.id, models: links, hasGrids: true))
        }
        return result
    }

    /// `name` with anything but letters, digits, `-`, `_` and `.` replaced by `_`.
    static func safeName(_ name: String) -> String {
        String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }

    /// The path of `file` relative to the folder `base` (both resolved against the current directory), with `/`.
    static func relativePath(_ file: URL, from base: URL) -> String {
        let f = file.standardizedFileURL.pathComponents, b = base.standardizedFileURL.pathComponents
        var common = 0
        while common < min(f.count, b.count), f[common] == b[common] { common += 1 }
        let parts = Array(repeating: "..", count: b.count - common) + f[common...]
        return parts.joined(separator: "/")
    }
}
