// Data-parallel ranks in the CLI. Two ways to get them:
//  - the stage starts them (`ranks: N`): `mpirun … hprune _job … --data-parallel` (Job.swift), each rank runs
//    `Ranks.runStage` for the one stage its parent holds the lock of;
//  - the user starts hprune under a launcher, `mpirun -np N hprune run R` or `srun -n N hprune run R`: rank 0 is
//    the ordinary driver (stages one at a time) and announces each data-parallel stage it reaches
//    (`DataParallel.Driver`); ranks 1… wait for announcements (`Ranks.follow`, sleeping between polls) and run
//    each announced stage with it, until rank 0 says it is done.
import ArtifactStore
import RecipeLanguage
import CPUBackend
import Foundation
import Scheduler
import StageGraph
import Stages
import Training

enum Ranks {
    /// Joins the MPI world this process was started in, checks its size against what the launcher was asked for,
    /// and sets the threads per rank (HPRUNE_THREADS, else this node's cores shared by its ranks).
    static func join(expected: Int?) throws -> any Collective {
        let world: any Collective
        do { world = try MPICollective.shared() } catch {
            Terminal.err("hprune rank: error: \(error)")
            throw Exit.failed
        }
        if let expected, expected != world.size {
            Terminal.err("hprune rank \(world.rank) of \(world.size): error: the launcher started \(expected) ranks but MPI sees a world of \(world.size): they were not connected (srun needs `--mpi=pmix`; hprune's own srun takes HPRUNE_SRUN_MPI)")
            world.abort(code: 1)
        }
        if ProcessInfo.processInfo.environment["HPRUNE_THREADS"] == nil {
            let local = MPILaunch.localSize() ?? world.size
            CPUBackend.setThreadCount(max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, local)))
        }
        if world.rank == 0 {
            let t = CPUBackend.threadCount
            Terminal.err("hprune rank 0 of \(world.size): \(world.description), \(t) thread\(t == 1 ? "" : "s") per rank on \(ProcessInfo.processInfo.hostName)")
        }
        return world
    }

    /// Runs `stage` (action `key`) as this process's rank of `world`: no lock, no action record. Any failure is
    /// printed, handed to `onFailure`, and ends every rank (MPI_Abort), so none waits for one that stopped.
    static func runStage(_ stage: String, key: String, recipe: RecipeOptions, storeOptions: StoreOptions, backend: BackendSelection?,
                         world: any Collective, onFailure: (String) -> Void = { _ in })
        async -> (outputs: [String: Digest], recorder: StageRecorder) {
        let me = "hprune rank \(world.rank) of \(world.size)"
        func fail(_ message: String) -> Never {
            Terminal.err("\(me): error: \(message)")
            onFailure(message)
            world.abort(code: 1)
        }
        let ws: Workspace
        do { ws = try recipe.workspace() } catch { fail("the recipe \(recipe.recipe) does not check") }
        let store: ArtifactStore
        do { store = try storeOptions.open(for: ws, writesLedger: false) } catch { fail("cannot open the store: \(error)") }
        let resolved: ResolvedBackend
        do { resolved = try BackendChoice.resolve(requested: backend ?? ws.recipe.backend, recipe: ws.recipe) } catch {
            fail("backend: \(error)")
        }
        let plan: Plan
        let sources: [String: ArtifactRef]
        let deps: [String: [String: String]]
        do {
            sources = try ws.hashSources(store: store)
            deps = try ws.hashFileDependencies(store: store)
            plan = try ws.plan(store: store, backend: resolved.name, numerics: resolved.versions)
        } catch {
            fail(error.diagnostics.map(\.message).joined(separator: "; "))
        }
        guard ws.graph.stage(stage) != nil, let entry = plan.entry(stage) else { fail("the recipe has no stage '\(stage)'") }
        guard entry.key == key else {
            fail("the action key of '\(stage)' is \(entry.key?.prefix(12) ?? "unknown") on this rank, but rank 0 runs \(key.prefix(12)): the recipe, a source or the hprune binary differs between the ranks' nodes")
        }
        var scheduler = Scheduler(
            graph: ws.graph, kinds: StageKinds.executables, store: store, context: ws.keyContext(backend: resolved.name, numerics: resolved.versions),
            sources: sources, fileDependencies: deps, recipeDirectory: ws.recipeDirectory, backend: resolved.name,
            options: RunOptions(), isTerminal: false)
        scheduler.jobCommand = Job.commandLine(recipe: recipe, store: store, backend: resolved.name)
        var upstream: [String: [String: Digest]] = [:]
        for e in plan.entries where e.cached { upstream[e.name] = e.outputs }
        // Rank 0's progress goes to stderr (where a parent stage reads it); the other ranks stay quiet.
        let progress = world.rank == 0 ? ProgressSink(stage: stage, isTerminal: false, emit: { Terminal.err($0) }) : ProgressSink.silent
        DataParallel.world = world
        defer { DataParallel.world = nil }
        do {
            return try await scheduler.runAsRank(stage, upstream: upstream, key: key, progress: progress)
        } catch let f as StageFailure {
            fail(f.message + (f.log.map { " (\($0))" } ?? ""))
        } catch {
            fail("\(error)")
        }
    }

    /// Ranks 1… of `mpirun -np N hprune run R`: run each stage rank 0 announces, until it says it is done.
    static func follow(_ world: any Collective, recipe: RecipeOptions, storeOptions: StoreOptions, backend: BackendSelection?) async throws {
        while let (stage, key) = try DataParallel.Driver.nextAnnouncement(world) {
            _ = await runStage(stage, key: key, recipe: recipe, storeOptions: storeOptions, backend: backend, world: world)
        }
        MPICollective.finalize()
    }
}
