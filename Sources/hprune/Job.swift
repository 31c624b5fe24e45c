// `hprune _job` (hidden): what one Slurm job runs. It re-opens the recipe and store exactly as the driver did,
// checks that the action key it was given is still the one the plan yields (upstream stages all cached), runs
// that one stage (under the per-action lock, so a finished action is never run twice), and writes a JobResult.
import ArgumentParser
import ArtifactStore
import Foundation
import RecipeLanguage
import Scheduler
import StageGraph
import Stages

struct Job: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "_job", abstract: "Run one action of a recipe (what a Slurm job of `run --executor slurm` runs).",
        shouldDisplay: false)

    @OptionGroup var recipe: RecipeOptions
    @OptionGroup var storeOptions: StoreOptions
    @Option(help: "The backend the driver resolved (cpu, cuda or reference).", transform: BackendSelection.argument)
    var backend: BackendSelection
    @Option(help: "The stage to run.") var stage: String
    @Option(help: "The action key the driver planned for it.") var key: String
    @Option(help: "Where to write the JobResult JSON.") var result: String = ""
    @Flag(help: "Run even if cached (the driver was given --force for this stage).") var force = false
    @Option(help: "Run shard $SLURM_ARRAY_TASK_ID of this many (a job array task) instead of the whole stage.") var shards: Int?

    func run() async throws {
        let clock = ContinuousClock.now
        func finish(_ status: String, error: String? = nil, log: String? = nil, metrics: [JobMetric] = []) throws {
            guard !result.isEmpty else {
                Terminal.err("job: stage '\(stage)' \(status)" + (error.map { ": " + $0 } ?? ""))
                return
            }
            let d = ContinuousClock.now - clock
            let r = JobResult(status: status, seconds: Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18,
                              error: error, log: log, metrics: metrics)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            let tmp = result + ".\(getpid()).tmp"
            try encoder.encode(r).write(to: URL(fileURLWithPath: tmp))
            guard rename(tmp, result) == 0 else { throw Exit.failed }
            Terminal.err("job: stage '\(stage)' \(status)" + (error.map { ": " + $0 } ?? ""))
        }
        let job = ProcessInfo.processInfo.environment["SLURM_JOB_ID"].map { "Slurm job \($0)" } ?? "pid \(getpid())"
        Terminal.err("job: \(job) on \(ProcessInfo.processInfo.hostName): stage '\(stage)', action \(key.prefix(12))")

        let ws: Workspace
        do { ws = try recipe.workspace() } catch {
            try finish("failed", error: "the recipe \(recipe.recipe) no longer checks (see the job log)")
            throw Exit.invalid
        }
        let store = try storeOptions.open(for: ws)
        guard backend != .auto else {
            try finish("failed", error: "--backend auto: the driver passes the backend it resolved")
            throw Exit.invalid
        }
        let resolved = try ResolvedBackend.named(backend.rawValue)
        let plan: Plan
        let sources: [String: ArtifactRef]
        let deps: [String: [String: String]]
        do {
            sources = try ws.hashSources(store: store)
            deps = try ws.hashFileDependencies(store: store)
            plan = try ws.plan(store: store, backend: resolved.name, numerics: resolved.versions)
        } catch {
            Terminal.report(error.diagnostics)
            try finish("failed", error: error.diagnostics.map(\.message).joined(separator: "; "))
            throw Exit.invalid
        }
        guard let node = ws.graph.stage(stage), let entry = plan.entry(stage) else {
            try finish("failed", error: "the recipe has no stage '\(stage)'")
            throw Exit.invalid
        }
        let upstream = node.dependencies.filter { plan.entry($0)?.cached != true }
        guard upstream.isEmpty else {
            try finish("failed", error: "upstream stage\(upstream.count == 1 ? "" : "s") \(upstream.joined(separator: ", ")) not in the store \(store.root.path); is it on a filesystem every node shares?")
            throw Exit.failed
        }
        guard entry.key == key else {
            try finish("failed", error: "the action key of '\(stage)' is \(entry.key?.prefix(12) ?? "unknown") here, but the driver planned \(key.prefix(12)): the recipe, a source, the hprune binary or the kernel families differ between the driver and this node (here: \(resolved.numerics.map(\.description).joined(separator: ", ")); set HPRUNE_ISA to the driver's family, see `hprune backends`)")
            throw Exit.failed
        }

        let scheduler = Scheduler(
            graph: ws.graph, kinds: StageKinds.executables, store: store,
            context: ws.keyContext(backend: resolved.name, numerics: resolved.versions),
            sources: sources, fileDependencies: deps, recipeDirectory: ws.recipeDirectory, backend: resolved.name,
            options: RunOptions(force: force ? [stage] : []), isTerminal: false,
            events: { event in if let line = ProgressLines.line(for: event, quiet: false) { Terminal.err(line) } },
            output: { line in Terminal.err(line.hasPrefix("\r") ? String(line.dropFirst()) : line) })
        var outputs: [String: [String: Digest]] = [:]
        for e in plan.entries where e.cached { outputs[e.name] = e.outputs }

        if let shards {
            guard shards >= 1, let index = ProcessInfo.processInfo.environment["SLURM_ARRAY_TASK_ID"].flatMap({ Int($0) }),
                  (0..<shards).contains(index) else {
                try finish("failed", error: "--shards \(shards) needs SLURM_ARRAY_TASK_ID in 0..<\(shards) (run it as a job array task)")
                throw Exit.invalid
            }
            do {
                try await scheduler.runShard(stage, upstream: outputs, index: index, count: shards)
            } catch {
                try finish("failed", error: "shard \(index + 1)/\(shards): \(error)")
                throw Exit.failed
            }
            try finish("ran")
            return
        }

        // scancel and the time limit send SIGTERM: cancel the stage so nothing half-written stays behind.
        let task = Task { await scheduler.runSingle(stage, upstream: outputs) }
        signal(SIGTERM, SIG_IGN)
        let term = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        term.setEventHandler {
            Terminal.err("job: SIGTERM: cancelling stage '\(stage)'")
            task.cancel()
        }
        term.resume()
        guard let r = await task.value else { throw Exit.failed }
        term.cancel()
        try finish(r.status.rawValue, error: r.error, log: r.log,
                   metrics: r.metrics.map { JobMetric(name: $0.name, value: $0.value, unit: $0.unit) })
        if r.status != .ran && r.status != .cached { throw r.status == .cancelled ? Exit.interrupted : Exit.failed }
    }
}
