// Where `train` / `distill` meet data parallelism (Training/DataParallel.swift does the numerics):
//  - `plan`: the stage's micro-batches (`micro_batch`) and the collective the loop sums over — the MPI world when
//    this process is one of the ranks, else `SingleProcess` — or nil when the batch is trained whole (as before).
//  - `launchIfNeeded`: a stage with `ranks: N > 1` that is not itself a rank starts N copies of this binary,
//        mpirun -np N [--oversubscribe] [--allow-run-as-root] --bind-to none hprune _job … --data-parallel
//    (or `srun --ntasks=N --mpi=pmix …` inside a Slurm allocation of N tasks), waits, forwards rank 0's progress,
//    and returns the outputs rank 0 stored. This process keeps the action lock and records the action.
//  - `Driver`: rank 0 of an MPI world the user started around `hprune run` (mpirun -np N hprune run R) announces
//    each data-parallel stage to the other ranks instead of starting new ones.

import ArtifactStore
import Foundation
import Scheduler
import Training

public enum DataParallel {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var _world: (any Collective)?

    /// The MPI world when this process is a data-parallel rank (`hprune _job --data-parallel` sets it).
    public static var world: (any Collective)? {
        get { lock.withLock { _world } }
        set { lock.withLock { _world = newValue } }
    }

    /// False on ranks 1… of a data-parallel group: they train but store nothing.
    public static var isRoot: Bool { (world?.rank ?? 0) == 0 }

    nonisolated(unsafe) private static var _driver: Driver?
    /// Set on rank 0 of `mpirun -np N hprune run …`: the stages it runs announce themselves to the other ranks.
    public static var driver: Driver? {
        get { lock.withLock { _driver } }
        set { lock.withLock { _driver = newValue } }
    }

    /// Rank 0 of an MPI world started around `hprune run`. Each data-parallel stage it reaches is announced (stage
    /// name and action key, one patient broadcast) before it trains with the other ranks; `finish` tells them to
    /// exit. Stages run one at a time on rank 0, so announcements and the stages' collectives never interleave.
    public final class Driver: @unchecked Sendable {
        public let world: any Collective
        private let lock = NSLock()
        private var announced: String?
        private var finished = false

        public init(world: any Collective) { self.world = world }

        /// The action key announced last (the stage that trains with the other ranks now).
        public var announcedKey: String? { lock.withLock { announced } }

        static let messageBytes = 1024

        /// Rank 0: the other ranks are to run `stage` (action `key`) with it now.
        func announce(stage: String, key: String) throws {
            let text = Array("\(stage)\n\(key)".utf8)
            precondition(text.count < Self.messageBytes, "stage name too long to announce")
            var buf = text + [UInt8](repeating: 0, count: Self.messageBytes - text.count)
            try buf.withUnsafeMutableBytes { try world.patientBroadcast($0, root: 0, poll: .milliseconds(20)) }
            lock.withLock { announced = key }
        }

        /// Rank 0, once, when the run ends (whatever its outcome): the other ranks exit.
        public func finish() {
            let first = lock.withLock { () -> Bool in defer { finished = true }; return !finished }
            guard first else { return }
            var buf = [UInt8](repeating: 0, count: Self.messageBytes)
            try? buf.withUnsafeMutableBytes { try world.patientBroadcast($0, root: 0, poll: .milliseconds(20)) }
        }

        /// Ranks 1…: waits (sleeping between polls) for rank 0's next announcement; nil when it is done.
        public static func nextAnnouncement(_ world: any Collective) throws -> (stage: String, key: String)? {
            var buf = [UInt8](repeating: 0, count: messageBytes)
            try buf.withUnsafeMutableBytes { try world.patientBroadcast($0, root: 0, poll: .milliseconds(50)) }
            let text = String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
            guard !text.isEmpty else { return nil }
            let parts = text.split(separator: "\n", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw CollectiveError("rank 0 announced '\(text.prefix(80))', not a stage and key") }
            return (parts[0], parts[1])
        }
    }

    /// The recipe's `ranks` (1 when absent).
    static func ranks(_ ctx: StageContext) -> Int { ctx.params["ranks"]?.int ?? 1 }

    /// Micro-batches and collective for the training loop; nil: the whole batch at once (no `micro_batch`, one process).
    static func plan(_ ctx: StageContext, batch: Int) throws -> (micro: MicroBatches, collective: any Collective)? {
        var world = self.world
        if world == nil, let driver, driver.announcedKey == ctx.actionKey { world = driver.world }
        guard let m = ctx.params["micro_batch"]?.int else {
            if let world, world.size > 1 {
                throw ctx.failure("running as rank \(world.rank) of \(world.size), but the stage has no 'micro_batch': the batch cannot be shared",
                                  log: "fix: set `micro_batch:` (e.g. \(max(1, batch / world.size))) so the batch splits into micro-batches the ranks divide")
            }
            return nil
        }
        let micro = MicroBatches(batch: batch, size: m)
        if let world, world.size > micro.count {
            throw ctx.failure("\(world.size) ranks but only \(micro.count) micro-batch\(micro.count == 1 ? "" : "es") (batch \(batch), micro_batch \(m))",
                              log: "fix: use at most \(micro.count) ranks, or a smaller `micro_batch`")
        }
        return (micro, world ?? SingleProcess())
    }

    /// Starts the stage's ranks when `ranks` > 1 and this process is not one of them; returns their outputs, or nil
    /// when the stage should run here (one rank, or this process is a rank).
    static func launchIfNeeded(_ ctx: StageContext) async throws -> [String: Digest]? {
        let ranks = ranks(ctx)
        if world != nil { return nil }
        if let driver {   // rank 0 of `mpirun -np N hprune run`: the ranks exist already
            let n = driver.world.size
            guard let m = ctx.params["micro_batch"]?.int else {
                ctx.progress.log("no `micro_batch`: rank 0 trains this stage alone while the other \(n - 1) rank\(n == 2 ? "" : "s") wait")
                return nil
            }
            let micro = MicroBatches(batch: ctx.params["batch"]?.int ?? 4, size: m)
            guard micro.count >= n else {
                throw ctx.failure("\(n) MPI ranks but only \(micro.count) micro-batch\(micro.count == 1 ? "" : "es") (batch \(micro.batch), micro_batch \(m)): a rank would have nothing to do",
                                  log: "fix: start at most \(micro.count) ranks, or use a smaller `micro_batch`")
            }
            if ranks != 1 && ranks != n { ctx.progress.log("`ranks: \(ranks)` ignored: the MPI world has \(n) ranks") }
            ctx.progress.log("training with the \(n) MPI ranks hprune was started with")
            try driver.announce(stage: ctx.stage.name, key: ctx.actionKey)
            return nil
        }
        guard ranks > 1 else { return nil }
        if let n = MPILaunch.worldSize(), n > 1 {
            throw ctx.failure("`ranks: \(ranks)`, but this hprune process is itself one of \(n) MPI ranks (started by mpirun or srun)",
                              log: "fix: run `hprune run` without mpirun/srun: hprune starts the stage's ranks itself")
        }
        guard let base = ctx.jobCommand else {
            throw ctx.failure("`ranks: \(ranks)` needs the hprune command line to start its ranks (run the recipe with `hprune run`)")
        }
        let env = ProcessInfo.processInfo.environment
        let launcher = try launcher(ctx, ranks: ranks, env: env)
        let resultURL = ctx.workDirectory.appendingPathComponent("rank0-result.json")
        let argv = launcher.prefix + base + ["--stage", ctx.stage.name, "--key", ctx.actionKey, "--result", resultURL.path,
                                             "--data-parallel", "--ranks", String(ranks)]
        var childEnv = env
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if childEnv["HPRUNE_THREADS"] == nil {
            let perRank = env["SLURM_CPUS_PER_TASK"].flatMap(Int.init) ?? max(1, cores / ranks)
            childEnv["HPRUNE_THREADS"] = String(perRank)
        }
        if launcher.name == "mpirun", getuid() == 0 {
            childEnv["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            childEnv["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        }
        ctx.progress.log("starting \(ranks) ranks with \(launcher.name) (\(childEnv["HPRUNE_THREADS"] ?? "?") thread\(childEnv["HPRUNE_THREADS"] == "1" ? "" : "s") each)")
        ctx.recorder.log("data-parallel: " + argv.joined(separator: " ") + "\n")
        ctx.recorder.metric("data_parallel.ranks", Double(ranks))

        // Forward rank 0's progress lines while the ranks run (its stderr, read as it grows).
        let stderrURL = ctx.workDirectory.appendingPathComponent("stderr.log")
        let follower = Task {
            var offset: UInt64 = 0
            var pending = Data()
            func drain() {
                guard let h = FileHandle(forReadingAtPath: stderrURL.path) else { return }
                defer { try? h.close() }
                try? h.seek(toOffset: offset)
                let d = h.readDataToEndOfFile()
                offset += UInt64(d.count)
                pending.append(d)
                while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...nl)
                    if line.hasPrefix("  \(ctx.stage.name)") { ctx.progress.line(line) }
                    else if line.hasPrefix("hprune rank 0 of") { ctx.progress.log(line) }
                }
            }
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(500))
                drain()
            }
            drain()
        }
        defer { follower.cancel() }
        let (status, signalled, _, err) = try await CommandStage.runProcess(
            launcher.program, arguments: Array(argv.dropFirst()), environment: childEnv, directory: ctx.workDirectory,
            logDirectory: ctx.workDirectory, timeout: nil)
        follower.cancel()
        _ = await follower.value
        if Task.isCancelled { throw CancellationError() }

        let result = FileManager.default.contents(atPath: resultURL.path).flatMap { try? JSONDecoder().decode(JobResult.self, from: $0) }
        if let result {
            for m in result.metrics { ctx.recorder.metric(m.name, m.value, unit: m.unit) }
            if let log = result.log, !log.isEmpty { ctx.recorder.log(log) }
        }
        if status == 0, !signalled, let result, result.status == "ran", let outs = result.outputs {
            var digests: [String: Digest] = [:]
            for (port, hex) in outs {
                guard let d = Digest(hex: hex) else { throw ctx.failure("rank 0 reported a malformed digest '\(hex)' for '\(port)'") }
                digests[port] = d
            }
            return digests
        }
        let checkpoint = ctx.store.partial(namespace: ctx.actionKey, name: "checkpoint")?.extra["step"]   // TrainingLoop.saveCheckpoint
        let resume = checkpoint.map { "the checkpoint after step \($0) is kept; run again to resume from it" }
            ?? "no checkpoint was saved yet (`checkpoint_every`)"
        let why = result?.error ?? rankErrors(err)
        throw ctx.failure("the \(ranks) data-parallel ranks (\(launcher.name)) \(signalled ? "were killed by signal \(status)" : "ended with status \(status)"): \(why); \(resume)",
                          log: CommandStage.tail(err, lines: 40))
    }

    /// The lines of the ranks' stderr that say what went wrong (rank errors, the launcher's notice of a lost rank).
    static func rankErrors(_ err: String) -> String {
        let lines = err.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let picked = lines.filter {
            $0.contains("error:") || $0.contains("noticed that process rank") || $0.contains("exited on signal")
                || $0.contains("not enough slots") || $0.hasPrefix("srun: error")
        }
        return picked.isEmpty ? "see the stage log (`hprune show RUN --log STAGE`)" : Array(picked.prefix(4)).joined(separator: " / ")
    }

    struct Launcher {
        var name: String
        var program: URL
        /// The whole command line before hprune's own arguments, program first.
        var prefix: [String]
    }

    /// mpirun, or srun inside a Slurm allocation that has the tasks; errors name what to install.
    static func launcher(_ ctx: StageContext, ranks: Int, env: [String: String]) throws -> Launcher {
        let path = env["PATH"] ?? "/usr/bin:/bin"
        func find(_ tool: String) -> URL? { CommandStage.resolveProgram(tool, in: ctx.workDirectory, path: path) }
        if env["SLURM_JOB_ID"] != nil, let tasks = env["SLURM_NTASKS"].flatMap(Int.init), tasks >= ranks, let srun = find("srun") {
            guard MPICollective.libraryAvailable() else {
                throw ctx.failure("`ranks: \(ranks)` needs Open MPI's libmpi.so.40 on every node, and it cannot be loaded here: \(MPILaunch.installHint)")
            }
            return Launcher(name: "srun", program: srun,
                            prefix: [srun.path, "--ntasks=\(ranks)", "--kill-on-bad-exit=1", "--mpi=\(env["HPRUNE_SRUN_MPI"] ?? "pmix")"])
        }
        guard let mpirun = find("mpirun") else {
            throw ctx.failure("`ranks: \(ranks)` needs `mpirun`, which is not on PATH: \(MPILaunch.installHint), or set `ranks: 1` (the same result in one process)")
        }
        guard MPICollective.libraryAvailable() else {
            throw ctx.failure("`ranks: \(ranks)` needs Open MPI's libmpi.so.40, which cannot be loaded: \(MPILaunch.installHint), or set `ranks: 1` (the same result in one process)")
        }
        var prefix = [mpirun.path, "-np", String(ranks), "--bind-to", "none"]
        if ranks > ProcessInfo.processInfo.activeProcessorCount { prefix.append("--oversubscribe") }
        return Launcher(name: "mpirun", program: mpirun, prefix: prefix)
    }
}
