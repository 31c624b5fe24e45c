// `hprune run`: check, plan and execute a recipe; reuse cached stages; record the run in the ledger.
// SIGINT cancels running stages cleanly (exit 130); a failed stage exits 1; an invalid recipe exits 2.
import ArgumentParser
import ArtifactStore
import Foundation
import RecipeLanguage
import Scheduler
import StageGraph
import Stages
import Training

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a recipe: stages whose inputs and params are unchanged are taken from the cache.",
        discussion: """
            Examples:
              hprune run recipes/quickstart.yaml
              hprune run recipes/quickstart.yaml --set vars.budget=0.3 --jobs 1
              hprune run recipes/quickstart.yaml --force score --json
              hprune run recipes/quickstart.yaml --executor slurm   # each stage as a Slurm job (Docs/scale-out.md)
            """)

    @OptionGroup var recipe: RecipeOptions
    @OptionGroup var storeOptions: StoreOptions
    @Option(help: BackendSelection.optionHelp, transform: BackendSelection.argument) var backend: BackendSelection?
    @Option(help: "Stages to run at once (default: the number of cores; 64 jobs in the queue with --executor slurm).") var jobs: Int?
    @Option(help: "local | slurm: where stages run (default: the recipe's `executor:`, else local).") var executor: String?
    @Flag(help: "After a failure, keep running the stages that do not depend on it.") var keepGoing = false
    @Option(name: .customLong("force"), help: "Re-run STAGE even if cached (repeatable).") var force: [String] = []
    @Flag(help: "Print JSON: {\"run\", \"stages\": [{name, kind, status, key, seconds, outputs}]}.") var json = false
    @Flag(name: .shortAndLong, help: "Print only failures and the summary.") var quiet = false

    func validate() throws {
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if let executor, !SlurmSettings.executors.contains(executor) {
            throw ValidationError("--executor must be local or slurm, got '\(executor)'")
        }
    }

    func run() async throws {
        // Started by mpirun / srun as one of N ranks: rank 0 drives, the others follow (Ranks.swift).
        var driver: DataParallel.Driver?
        if let n = MPILaunch.worldSize(), n > 1 {
            if (executor ?? "local") == "slurm" {
                Terminal.err("error: `--executor slurm` under mpirun/srun: run the driver as one process (a stage's `ranks:` gets its own tasks)")
                throw Exit.invalid
            }
            let world = try Ranks.join(expected: n)
            if world.rank != 0 {
                return try await Ranks.follow(world, recipe: recipe, storeOptions: storeOptions, backend: backend)
            }
            driver = DataParallel.Driver(world: world)
            DataParallel.driver = driver
        }
        defer {
            driver?.finish()
            if driver != nil { MPICollective.finalize() }
        }
        let ws = try recipe.workspace()
        try checkStageNames(force, in: ws)
        let store = try storeOptions.open(for: ws)
        let resolved = try BackendChoice.resolve(requested: backend ?? ws.recipe.backend, recipe: ws.recipe)
        let backendName = resolved.name
        let sources: [String: ArtifactRef]
        let deps: [String: [String: String]]
        do {
            sources = try ws.hashSources(store: store)
            deps = try ws.hashFileDependencies(store: store)
        } catch {
            Terminal.report(error.diagnostics)
            throw Exit.invalid
        }

        let recorder = RunRecorder(store: store, workspace: ws, backend: backendName)
        let runID = try recorder.begin()
        let quiet = self.quiet || json
        if !quiet {
            Terminal.err("run \(runID): recipe \(ws.recipe.name), \(ws.graph.stages.count) stages, backend \(backendName) "
                         + "(\(resolved.numerics.map(\.description).joined(separator: ", "))), store \(store.root.path)")
        }

        let executorName = executor ?? ws.recipe.executor
        let remote = try executorName == "slurm" ? slurmExecutor(ws: ws, store: store, backend: backendName) : nil
        // Under mpirun, rank 0 runs one stage at a time: a data-parallel stage's collectives must not interleave.
        let jobs = driver != nil ? 1 : self.jobs ?? (remote == nil ? ProcessInfo.processInfo.activeProcessorCount : 64)
        if !quiet && remote != nil { Terminal.err("executor slurm: each stage that is not cached runs as a Slurm job (logs in \(store.root.path)/slurm/logs)") }

        var scheduler = Scheduler(
            graph: ws.graph, kinds: StageKinds.executables, store: store,
            context: ws.keyContext(backend: backendName, numerics: resolved.versions),
            sources: sources, fileDependencies: deps, recipeDirectory: ws.recipeDirectory, backend: backendName,
            options: RunOptions(jobs: jobs, keepGoing: keepGoing, force: Set(force)), isTerminal: Terminal.stderrIsTTY,
            events: { [driver] event in
                recorder.handle(event)
                if let line = ProgressLines.line(for: event, quiet: quiet) { Terminal.err(line) }
                // A data-parallel stage that failed on rank 0 leaves the other ranks inside its collectives: end them.
                if let driver, case .finished(let r, _, _) = event, r.status != .ran, r.status != .cached,
                   let key = r.key, key == driver.announcedKey {
                    Terminal.err("error: stage '\(r.name)' \(r.status.rawValue) on rank 0 while \(driver.world.size - 1) more ranks train it: \(r.error ?? ""); ending all ranks")
                    recorder.end(status: r.status == .cancelled ? "cancelled" : "failed")
                    driver.world.abort(code: r.status == .cancelled ? 130 : 1)
                }
            },
            output: { line in
                guard !quiet else { return }
                if line.hasPrefix("\r") { Terminal.errRaw(line) } else { Terminal.err(line) }
            })
        scheduler.remote = remote
        scheduler.jobCommand = Job.commandLine(recipe: recipe, store: store, backend: backendName)

        let task = Task { await scheduler.run() }
        let interrupt = Interrupt.onSIGINT {
            Terminal.err("\ninterrupted: cancelling running stages (nothing half-written is kept)…")
            task.cancel()
        }
        let results = await task.value
        interrupt.cancel()

        let status: String = results.contains { $0.status == .cancelled } ? "cancelled"
            : results.contains { $0.status == .failed || $0.status == .skipped } ? "failed" : "succeeded"
        recorder.end(status: status)

        if json {
            Terminal.printJSON(["run": runID.rawValue, "status": status, "stages": results.map { r -> [String: Any] in
                var d: [String: Any] = ["name": r.name, "kind": r.kind, "status": r.status.rawValue,
                                        "key": r.key ?? NSNull(), "seconds": (r.seconds * 1000).rounded() / 1000,
                                        "outputs": r.outputs.mapValues(\.hex)]
                if let e = r.error { d["error"] = e }
                return d
            }])
        }
        for r in results where r.status == .failed {
            Terminal.err("error: stage '\(r.name)' failed: \(r.error ?? "unknown error")")
        }
        let counts = Dictionary(grouping: results, by: \.status).mapValues(\.count)
        let summary = [StageStatus.ran, .cached, .failed, .skipped, .cancelled].compactMap { s in counts[s].map { "\($0) \(s.rawValue)" } }
        if !json || status != "succeeded" {
            Terminal.err("run \(runID) \(status): " + summary.joined(separator: ", "))
        }
        switch status {
        case "cancelled": throw Exit.interrupted
        case "failed": throw Exit.failed
        default: break
        }
    }
}

extension Run {
    /// The Slurm executor for this run: jobs run this same binary on the same recipe, overrides and store.
    func slurmExecutor(ws: Workspace, store: ArtifactStore, backend: String) throws -> SlurmExecutor {
        guard Slurm.available("sbatch"), Slurm.available("squeue") else {
            Terminal.err("error: executor slurm: 'sbatch' and 'squeue' must be on PATH (install Slurm's client, or run with --executor local)")
            throw Exit.invalid
        }
        let command = Job.commandLine(recipe: recipe, store: store, backend: backend)
        let parsed = ws.recipe
        var executor = SlurmExecutor(store: store, jobCommand: command, settings: { parsed.slurmSettings(forStage: $0) })
        executor.warn = { Terminal.err("warning: " + $0) }
        return executor
    }
}

/// Per-stage progress lines: `[2/5] ✓ score  ran 1.24s`.
enum ProgressLines {
    static func line(for event: SchedulerEvent, quiet: Bool) -> String? {
        switch event {
        case .warning(let message):
            return "warning: " + message
        case .started(let stage, let kind, let i, let n):
            return quiet ? nil : "[\(i)/\(n)] ▶ \(stage) (\(kind))"
        case .finished(let r, let i, let n):
            let time = ProgressBar.duration(r.seconds)
            switch r.status {
            case .ran: return quiet ? nil : "[\(i)/\(n)] ✓ \(r.name)  ran in \(time)"
            case .cached: return quiet ? nil : "[\(i)/\(n)] ✓ \(r.name)  cached"
            case .failed: return "[\(i)/\(n)] ✗ \(r.name)  failed after \(time)"
            case .skipped: return quiet ? nil : "[\(i)/\(n)] - \(r.name)  skipped (\(r.error ?? ""))"
            case .cancelled: return quiet ? nil : "[\(i)/\(n)] ✗ \(r.name)  cancelled"
            }
        }
    }
}

/// Turns SIGINT into a callback (once), instead of killing the process mid-write.
final class Interrupt: @unchecked Sendable {
    private let source: DispatchSourceSignal

    private init(_ source: DispatchSourceSignal) { self.source = source }

    static func onSIGINT(_ handler: @escaping @Sendable () -> Void) -> Interrupt {
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler {
            handler()
            // A second Ctrl-C while cancelling stops at once.
            signal(SIGINT, SIG_DFL)
        }
        source.resume()
        return Interrupt(source)
    }

    func cancel() {
        source.cancel()
        signal(SIGINT, SIG_DFL)
    }
}
