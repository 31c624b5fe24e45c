// `hprune _job` (hidden): what one Slurm job runs. It re-opens the recipe and store exactly as the driver did,
// checks that the action key it was given is still the one the plan yields (upstream stages all cached), runs
// that one stage (under the per-action lock, so a finished action is never run twice), and writes a JobResult.
// With `--data-parallel` it is one rank of a stage that started its ranks itself (`ranks: N`, under mpirun or
// srun): it joins the MPI world, runs the stage without lock or action record, and rank 0 writes the outputs.
import ArgumentParser
import ArtifactStore
import Foundation
import RecipeLanguage
import Scheduler
import StageGraph
import Stages
import Training

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
    @Flag(help: "Run as one MPI rank of a data-parallel stage whose parent process holds the lock (no action record).")
    var dataParallel = false
    @Option(help: "With --data-parallel: the number of ranks the stage started (checked against the MPI world).") var ranks: Int?

    /// `[this binary, "_job", recipe, --set …, --store …, --backend …]`: the command line that reopens `recipe` and
    /// `store` in another process (a Slurm job, a data-parallel rank); the caller appends `--stage`, `--key`, ….
    static func commandLine(recipe: RecipeOptions, store: ArtifactStore, backend: String) -> [String] {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let recipePath = URL(fileURLWithPath: recipe.recipe).standardizedFileURL.path
        return [exe, "_job", recipePath] + recipe.overrides.flatMap { ["--set", $0] }
            + (recipe.allowExtendsOutside ? ["--allow-extends-outside"] : [])
            + ["--store", store.root.path, "--backend", backend]
    }

    func run() async throws {
        if dataParallel { return try await runRank() }
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
        let store = try storeOptions.open(for: ws, writesLedger: false)   // only the driver writes the ledger
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

        var scheduler = Scheduler(
            graph: ws.graph, kinds: StageKinds.executables, store: store,
            context: ws.keyContext(backend: resolved.name, numerics: resolved.versions),
            sources: sources, fileDependencies: deps, recipeDirectory: ws.recipeDirectory, backend: resolved.name,
            options: RunOptions(force: force ? [stage] : []), isTerminal: false,
            events: { event in if let line = ProgressLines.line(for: event, quiet: false) { Terminal.err(line) } },
            output: { line in Terminal.err(line.hasPrefix("\r") ? String(line.dropFirst()) : line) })
        scheduler.jobCommand = Self.commandLine(recipe: recipe, store: store, backend: resolved.name)
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

extension Job {
    /// One rank of a data-parallel stage (`--data-parallel`). Every failure ends the whole group (MPI_Abort), so no
    /// rank waits forever for one that stopped; rank 0 writes the JobResult (outputs, metrics, or the error).
    func runRank() async throws {
        let clock = ContinuousClock.now
        let world = try Ranks.join(expected: ranks)
        let done = await Ranks.runStage(stage, key: key, recipe: recipe, storeOptions: storeOptions, backend: backend, world: world) { message in
            if world.rank == 0 { try? writeResult(JobResult(status: "failed", seconds: elapsed(clock), error: message)) }
        }
        if world.rank == 0 {
            try writeResult(JobResult(status: "ran", seconds: elapsed(clock), log: done.recorder.logText,
                                      metrics: done.recorder.metrics.map { JobMetric(name: $0.name, value: $0.value, unit: $0.unit) },
                                      outputs: done.outputs.mapValues(\.hex)))
        }
        try? world.barrier()
        MPICollective.finalize()
    }

    private func elapsed(_ start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// The JobResult at `--result`, written atomically (nothing when no path was given).
    private func writeResult(_ r: JobResult) throws {
        guard !result.isEmpty else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let tmp = result + ".\(getpid()).tmp"
        try encoder.encode(r).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, result) == 0 else { throw Exit.failed }
    }
}
