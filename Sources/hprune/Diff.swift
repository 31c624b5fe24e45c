// `hprune diff A B`: compare two runs or two recipes (or one of each) — parameters by dotted path, graph
// changes, which stages would re-run and which of their inputs changed (params, input digests, kernel-family
// numerics, files: the canonical JSON of their actions compared), and metrics side by side with deltas.
import ArgumentParser
import ArtifactStore
import Foundation
import Scheduler
import StageGraph
import Stages
import YAMLSupport

struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two runs or recipes: params, graph, stages that would re-run, metrics.",
        discussion: """
            A and B are run ids (or unique prefixes) or recipe files. `--set` applies to B, `--set-a` to A.
            Examples:
              hprune diff recipes/a.yaml recipes/b.yaml
              hprune diff recipes/quickstart.yaml recipes/quickstart.yaml --set vars.repeat=5
              hprune diff r-20261121-2015-ab12 r-20261121-2031-cd34 --json
            """)

    @Argument(help: "The first run id or recipe file.") var a: String
    @Argument(help: "The second run id or recipe file.") var b: String
    @OptionGroup var storeOptions: StoreOptions
    @Option(name: .customLong("set"), parsing: .unconditionalSingleValue, help: "Override in B (repeatable).") var setB: [String] = []
    @Option(name: .customLong("set-a"), parsing: .unconditionalSingleValue, help: "Override in A (repeatable).") var setA: [String] = []
    @Flag(name: .customLong("allow-extends-outside"), help: "Let 'extends' name files outside each recipe's folder tree.")
    var allowExtendsOutside = false
    @Flag(help: "Print JSON: {\"params\": [{path, a, b}], \"rerun\": [stage, …], \"why\": {stage: [change, …]}, \"metrics\": […], \"stages\": {…}}.") var json = false

    struct Side {
        var label: String
        var document: YAMLNode
        var stages: [(name: String, kind: String)]
        var actionKeys: [String: String?]
        /// Stage → the canonical JSON of its action (a recipe: as planned, provisional below a stage that must run;
        /// a run: as recorded), where known.
        var canonicals: [String: String]
        var definitionKeys: [String: String]?
        var graph: Graph?
        var plan: Plan?
        var metrics: [Metric]
    }

    func run() async throws {
        let store: ArtifactStore
        let sideA: Side, sideB: Side
        if isRecipe(a) || isRecipe(b) {
            let hint = isRecipe(a) ? a : b
            let ws = try RecipeOptions(recipe: hint, overrides: isRecipe(a) ? setA : setB, allowExtendsOutside: allowExtendsOutside).workspace()
            store = try storeOptions.open(for: ws)
        } else {
            store = try storeOptions.openStandalone()
        }
        sideA = try side(a, overrides: setA, store: store)
        sideB = try side(b, overrides: setB, store: store)

        let params = Compare.documents(sideA.document, sideB.document)
        var rerun: [String] = []
        var rewired: [String] = []
        var why: [String: [String]] = [:]
        if let ga = sideA.graph, let gb = sideB.graph, let pa = sideA.plan, let pb = sideB.plan {
            let c = Compare.graphs(ga, pa, gb, pb, documentA: sideA.document, documentB: sideB.document)
            rerun = c.rerun
            rewired = c.rewired
            for n in rerun { why[n] = c.reasons[n].map { $0.map(\.description) } ?? ["new stage"] }
        } else {
            // At least one side is a run: compare action keys (a stage whose key is unknown would run).
            rerun = sideB.stages.map(\.name).filter { n in
                guard let kb = sideB.actionKeys[n] ?? nil, let ka = sideA.actionKeys[n] ?? nil else { return true }
                return ka != kb
            }
            for n in rerun {
                guard sideA.actionKeys[n] != nil else { why[n] = ["new stage"]; continue }
                guard let ka = sideA.actionKeys[n] ?? nil else { why[n] = ["it has no action in A"]; continue }
                why[n] = Why.lines(from: sideA.canonicals[n], to: sideB.canonicals[n], oldKey: ka, newKey: sideB.actionKeys[n] ?? nil)
            }
        }
        let namesA = sideA.stages.map(\.name), namesB = sideB.stages.map(\.name)
        let added = namesB.filter { !namesA.contains($0) }, removed = namesA.filter { !namesB.contains($0) }
        let kindChanged = sideB.stages.filter { s in sideA.stages.first { $0.name == s.name }.map { $0.kind != s.kind } ?? false }.map(\.name)
        let metrics = pairMetrics(sideA.metrics, sideB.metrics)

        if json {
            Terminal.printJSON([
                "a": sideA.label, "b": sideB.label,
                "params": params.map { ["path": $0.path, "a": $0.a ?? NSNull(), "b": $0.b ?? NSNull()] as [String: Any] },
                "rerun": rerun,
                "why": why,
                "stages": ["added": added, "removed": removed, "rewired": rewired, "kind_changed": kindChanged],
                "metrics": metrics.map { m -> [String: Any] in
                    ["stage": m.stage, "name": m.name, "unit": m.unit, "a": m.a ?? NSNull(), "b": m.b ?? NSNull(),
                     "delta": (m.a != nil && m.b != nil) ? m.b! - m.a! : NSNull()]
                },
            ])
            return
        }
        print("A: \(sideA.label)\nB: \(sideB.label)")
        print(params.isEmpty ? "params: identical" : "params:")
        for p in params { print("  \(p.path): \(p.a ?? "(absent)") → \(p.b ?? "(absent)")") }
        if !added.isEmpty { print("stages added: " + added.joined(separator: ", ")) }
        if !removed.isEmpty { print("stages removed: " + removed.joined(separator: ", ")) }
        if !rewired.isEmpty { print("stages with changed inputs: " + rewired.joined(separator: ", ")) }
        if !kindChanged.isEmpty { print("stages with changed kind: " + kindChanged.joined(separator: ", ")) }
        print(rerun.isEmpty ? "would re-run: nothing" : "would re-run: " + rerun.joined(separator: ", "))
        for n in rerun { for line in why[n] ?? [] { print("  \(n): \(line)") } }
        if !metrics.isEmpty {
            print("metrics:")
            let w = max(6, metrics.map { $0.stage.count + $0.name.count + 1 }.max() ?? 0)
            for m in metrics {
                let delta: String
                if let x = m.a, let y = m.b {
                    let rel = x != 0 ? String(format: " (%+.1f%%)", (y - x) / abs(x) * 100) : ""
                    delta = "Δ " + Self.format(y - x) + rel
                } else { delta = "" }
                print("  \("\(m.stage).\(m.name)".padding(toLength: w, withPad: " ", startingAt: 0))  \((m.a.map(Self.format) ?? "-").padding(toLength: 12, withPad: " ", startingAt: 0))  \((m.b.map(Self.format) ?? "-").padding(toLength: 12, withPad: " ", startingAt: 0))  \(delta) \(m.unit)")
            }
        }
    }

    func isRecipe(_ s: String) -> Bool {
        (s.hasSuffix(".yaml") || s.hasSuffix(".yml") || s.contains("/")) && FileManager.default.fileExists(atPath: s)
    }

    func side(_ ref: String, overrides: [String], store: ArtifactStore) throws -> Side {
        if isRecipe(ref) {
            let ws = try RecipeOptions(recipe: ref, overrides: overrides, allowExtendsOutside: allowExtendsOutside).workspace()
            let resolved = try BackendChoice.resolve(requested: ws.recipe.backend, recipe: ws.recipe)
            let plan: Plan
            do { plan = try ws.plan(store: store, backend: resolved.name, numerics: resolved.versions) } catch {
                Terminal.report(error.diagnostics)
                throw Exit.invalid
            }
            let digest = Digest.of(Data(ws.recipe.document.canonicalJSON.utf8)).hex
            let lastRun = try store.ledger.runs(limit: nil).first { $0.start.recipeDigest == digest && $0.status == .succeeded }
            let label = ref + (overrides.isEmpty ? "" : " " + overrides.map { "--set \($0)" }.joined(separator: " "))
                + (lastRun.map { " (metrics from run \($0.id))" } ?? "")
            return Side(label: label, document: ws.recipe.document,
                        stages: ws.graph.stages.map { ($0.name, $0.kind.name) },
                        actionKeys: Dictionary(uniqueKeysWithValues: plan.entries.map { ($0.name, $0.key) }),
                        canonicals: Dictionary(uniqueKeysWithValues: plan.entries.map { ($0.name, $0.canonical) }),
                        definitionKeys: Dictionary(uniqueKeysWithValues: plan.entries.map { ($0.name, $0.definitionKey) }),
                        graph: ws.graph, plan: plan,
                        metrics: try lastRun.map { try store.ledger.metrics(of: $0.id) } ?? [])
        }
        let record: RunRecord
        do { record = try store.ledger.run(id: ref) } catch {
            Terminal.err("error: '\(ref)' is neither a recipe file nor a run in \(store.root.path): \(error)")
            throw Exit.invalid
        }
        let document = (try? YAMLParser.parse(record.start.resolvedJSON, file: "run \(record.id)"))
            ?? YAMLNode(.mapping([]), mark: .synthetic("run \(record.id)"))
        let stages = try store.ledger.stages(of: record.id)
        return Side(label: "run \(record.id) (\(record.start.recipePath))", document: document,
                    stages: stages.map { ($0.stage, $0.kind) },
                    actionKeys: Dictionary(stages.map { s -> (String, String?) in (s.stage, s.key.isEmpty ? nil : s.key) }, uniquingKeysWith: { _, b in b }),
                    canonicals: Dictionary(stages.compactMap { s in Why.canonical(key: s.key, store: store).map { (s.stage, $0) } },
                                           uniquingKeysWith: { _, b in b }),
                    definitionKeys: nil, graph: nil, plan: nil, metrics: try store.ledger.metrics(of: record.id))
    }

    struct MetricPair { var stage: String; var name: String; var unit: String; var a: Double?; var b: Double? }

    func pairMetrics(_ a: [Metric], _ b: [Metric]) -> [MetricPair] {
        var out: [MetricPair] = []
        func index(_ stage: String, _ name: String) -> Int? { out.firstIndex { $0.stage == stage && $0.name == name } }
        for m in a {
            if let i = index(m.stage, m.name) { out[i].a = m.value } else { out.append(MetricPair(stage: m.stage, name: m.name, unit: m.unit, a: m.value, b: nil)) }
        }
        for m in b {
            if let i = index(m.stage, m.name) { out[i].b = m.value } else { out.append(MetricPair(stage: m.stage, name: m.name, unit: m.unit, a: nil, b: m.value)) }
        }
        return out
    }

    static func format(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e12 { return String(Int64(v)) }
        return abs(v) >= 1e-3 && abs(v) < 1e6 ? String(format: "%.4g", v) : String(format: "%.3e", v)
    }
}

extension RecipeOptions {
    init(recipe: String, overrides: [String], allowExtendsOutside: Bool = false) {
        self.init()
        self.recipe = recipe
        self.overrides = overrides
        self.allowExtendsOutside = allowExtendsOutside
    }
}
