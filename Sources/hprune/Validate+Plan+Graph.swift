// `hprune validate`, `hprune plan`, `hprune graph`: check a recipe, show what a run would do, draw it.
import ArgumentParser
import Foundation
import RecipeLanguage
import Scheduler
import StageGraph
import YAMLSupport

struct Validate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a recipe and report every problem at once (exit 2 if invalid).",
        discussion: "Example: hprune validate recipes/quickstart.yaml --set vars.budget=0.3")

    @OptionGroup var recipe: RecipeOptions
    @Flag(help: "Print the checked stages as JSON.") var json = false

    func run() async throws {
        let ws = try recipe.workspace()
        if json {
            Terminal.printJSON(["valid": true, "recipe": ws.recipe.name,
                                "stages": ws.graph.stages.map { ["name": $0.name, "kind": $0.kind.name, "params": jsonValue($0.params)] }])
        } else {
            print("\(recipe.recipe): ok — recipe '\(ws.recipe.name)', \(ws.graph.stages.count) stage\(ws.graph.stages.count == 1 ? "" : "s"), "
                  + "\(ws.graph.sources.count) source\(ws.graph.sources.count == 1 ? "" : "s")")
        }
    }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show each stage's action key and whether it is cached, without running anything.",
        discussion: """
            Examples:
              hprune plan recipes/quickstart.yaml --json
              hprune plan recipes/quickstart.yaml --set vars.budget=0.35 --why
            """)

    @OptionGroup var recipe: RecipeOptions
    @OptionGroup var storeOptions: StoreOptions
    @Option(help: BackendSelection.optionHelp, transform: BackendSelection.argument) var backend: BackendSelection?
    @Option(name: .customLong("force"), help: "Plan STAGE as not cached (repeatable).") var force: [String] = []
    @Flag(help: "For each stage that would run, say what changed since its last action in this store: params, input digests, kernel-family numerics, files.")
    var why = false
    @Flag(help: "Print JSON: {\"backend\", \"numerics\", \"stages\": [{name, kind, key, cached, inputs}]} (with --why: \"why\", \"since_run\").")
    var json = false

    func run() async throws {
        let ws = try recipe.workspace()
        try checkStageNames(force, in: ws)
        let store = try storeOptions.open(for: ws)
        let resolved = try BackendChoice.resolve(requested: backend ?? ws.recipe.backend, recipe: ws.recipe)
        let plan: Plan
        do { plan = try ws.plan(store: store, backend: resolved.name, numerics: resolved.versions, force: Set(force)) } catch {
            Terminal.report(error.diagnostics)
            throw Exit.invalid
        }
        let reasons = why ? plan.entries.map { Why.explain($0, store: store, recipeName: ws.recipe.name) } : []
        if json {
            Terminal.printJSON([
                "backend": resolved.name, "numerics": resolved.versions,
                "stages": plan.entries.enumerated().map { i, e -> [String: Any] in
                    var d: [String: Any] = ["name": e.name, "kind": e.kind, "key": e.key ?? NSNull(), "cached": e.cached,
                                            "inputs": e.inputs]
                    if why {
                        d["why"] = reasons[i].lines
                        d["since_run"] = reasons[i].run ?? NSNull()
                    }
                    return d
                },
            ])
            return
        }
        let width = max(5, plan.entries.map(\.name.count).max() ?? 0)
        print("recipe \(ws.recipe.name) — store \(store.root.path), backend \(resolved.name) (\(resolved.numerics.map(\.description).joined(separator: ", ")))")
        for (i, e) in plan.entries.enumerated() {
            let state = e.cached ? "cached" : e.forced ? "run (forced)" : e.key == nil ? "run (after upstream)" : "run"
            let key = e.key.map { String($0.prefix(12)) } ?? "-"
            print("  \(e.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(e.kind.padding(toLength: 10, withPad: " ", startingAt: 0))  \(key.padding(toLength: 12, withPad: " ", startingAt: 0))  \(state)")
            if why, !reasons[i].lines.isEmpty {
                let indent = String(repeating: " ", count: width + 4)
                for line in reasons[i].lines { print(indent + "why: " + line) }
                if let run = reasons[i].run, reasons[i].lines.count > 0 { print(indent + "     (compared with its last action, in run \(run))") }
            }
        }
        let toRun = plan.entries.filter { !$0.cached }.count
        print("\(toRun) of \(plan.entries.count) stage\(plan.entries.count == 1 ? "" : "s") to run")
    }
}

struct GraphCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Draw the recipe's stage graph as text, Graphviz dot or Mermaid.",
        discussion: "Example: hprune graph recipes/quickstart.yaml --format dot | dot -Tpng > graph.png")

    @OptionGroup var recipe: RecipeOptions
    @Option(help: "text | dot | mermaid") var format: GraphFormat = .text

    func run() async throws {
        print(try recipe.workspace().graph.render(format))
    }
}

extension GraphFormat: ExpressibleByArgument {}

/// `--force NAME` must name a stage.
func checkStageNames(_ names: [String], in ws: Workspace) throws {
    let known = ws.graph.stages.map(\.name)
    for n in names where !known.contains(n) {
        let hint = Suggest.hint(for: n, in: known).map { " (\($0))" } ?? ""
        Terminal.err("error: --force \(n): no stage named '\(n)' in \(ws.recipe.file)\(hint)")
        throw Exit.invalid
    }
}

/// ParamValue → JSON-serialisable value.
func jsonValue(_ v: ParamValue) -> Any {
    switch v {
    case .null: return NSNull()
    case .bool(let b): return b
    case .int(let i): return i
    case .double(let d): return d
    case .string(let s): return s
    case .reference(let r): return r
    case .list(let l): return l.map(jsonValue)
    case .map(let m): return Dictionary(m.map { ($0.0, jsonValue($0.1)) }, uniquingKeysWith: { _, b in b })
    }
}
