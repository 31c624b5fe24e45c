// Data-parallel `distill` for real, with Open MPI's mpirun: 1, 2 and 4 ranks at the same global batch and
// micro-batches give bit-identical weights (equal model digests), `ranks` is not part of the cache key, a rank
// killed mid-run (SIGKILL) fails the stage with the checkpoint named and the next run resumes from it to the
// weights of an uninterrupted run, and `mpirun -np 2 hprune run` trains with both ranks to the same weights.
// Skipped, with the reason printed, only where `mpirun` is absent.
import Foundation
import Testing
import TestSupport

enum LocalMPI {
    /// Why data-parallel runs cannot be tested here, or nil.
    static let unavailable: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let found = path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/mpirun") }
        if found { return nil }
        let message = "SKIP: mpirun is not on PATH (apt-get install openmpi-bin libopenmpi-dev): data-parallel tests not run"
        print(message)
        return message
    }()
    static var available: Bool { unavailable == nil }
}

/// A teacher and a different student trained briefly from random init (the quickstart's config and data), then
/// `distill` with 4 micro-batches of 2 and checkpoints every 3 of its 12 steps; `ranks` comes from `--set`.
func dataParallelRecipe(_ dir: TemporaryDirectory) -> String {
    let q = repositoryRoot().appendingPathComponent("recipes/quickstart").path
    return dir.write("dp.yaml", """
        recipe: 1
        name: data-parallel
        seed: 0
        backend: cpu
        datasets:
          shapes: { path: \(q)/shapes.safetensors, format: safetensors }
        stages:
          teacher:
            kind: train
            init: { config: \(q)/config.json, seed: 0 }
            data: shapes
            steps: 3
            batch: 8
            optimizer: { adamw: { lr: 2.0e-3 } }
          student:
            kind: train
            init: { config: \(q)/config.json, seed: 1 }
            data: shapes
            steps: 1
            batch: 4
          distill:
            kind: distill
            student: student
            teacher: teacher
            data: shapes
            steps: 12
            batch: 8
            micro_batch: 2
            ranks: 1
            loss: { output: 1.0, feature: 1.0e-2 }
            optimizer: { adamw: { lr: 1.0e-3 } }
            checkpoint_every: 3
        """)
}

/// The rows of `show RUN --json` metrics for `stage` named `name`.
func stageMetric(_ run: CLIResult, store: String, stage: String, _ name: String) throws -> [Double] {
    let id = try #require(jsonObject(run.stdout)?["run"] as? String)
    let show = try CLI.run(["show", id, "--store", store, "--json"])
    let metrics = (jsonObject(show.stdout)?["metrics"] as? [[String: Any]]) ?? []
    return metrics.filter { $0["stage"] as? String == stage && $0["name"] as? String == name }.compactMap { $0["value"] as? Double }
}

@Suite(.serialized, .enabled(if: LocalMPI.available, "needs Open MPI's mpirun (apt-get install openmpi-bin libopenmpi-dev)"))
struct DataParallelTests {
    /// One store with the teacher and student trained; each distillation below runs on a copy of it.
    func baseStore(_ dir: TemporaryDirectory, recipe: String) throws -> String {
        let base = dir.path + "/base"
        let r = try CLI.run(["run", recipe, "--store", base, "--set", "stages.distill.steps=1", "--set", "stages.distill.micro_batch=8", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        return base
    }

    func copy(_ from: String, _ to: String) throws -> String {
        try FileManager.default.copyItem(atPath: from, toPath: to)
        return to
    }

    @Test func oneTwoAndFourRanksGiveBitIdenticalWeightsAndAKilledRankResumes() throws {
        let dir = TemporaryDirectory()
        let recipe = dataParallelRecipe(dir)
        let base = try baseStore(dir, recipe: recipe)
        var digests: [Int: String] = [:]
        for ranks in [1, 2, 4] {
            let store = try copy(base, dir.path + "/store-\(ranks)")
            let r = try CLI.run(["run", recipe, "--store", store, "--set", "stages.distill.ranks=\(ranks)", "--json"], timeout: 240)
            #expect(r.status == 0, "ranks \(ranks): \(r.stderr)")
            #expect(statuses(r)["distill"] == "ran", "ranks \(ranks): \(r.stdout)")
            digests[ranks] = outputDigests(r)["distill"]?["model"]
            #expect(try stageMetric(r, store: store, stage: "distill", "micro_batches") == [4])
            if ranks > 1 {
                // Really N processes under mpirun: the stage's log has the command and rank 0's MPI world.
                #expect(try stageMetric(r, store: store, stage: "distill", "data_parallel.ranks") == [Double(ranks)])
                let log = try stageLog(r, store: store, stage: "distill")
                #expect(log.contains("mpirun -np \(ranks)") && log.contains("--data-parallel"), "\(log)")
                #expect(log.contains("Open MPI") && log.contains("\(ranks) ranks"), "\(log)")
            }
        }
        let expected = try #require(digests[1])
        #expect(digests[2] == expected, "2 ranks differ from 1")
        #expect(digests[4] == expected, "4 ranks differ from 1")

        // `ranks` is not in the action key: the 2-rank store has the 1-rank run's cache entry.
        let again = try CLI.run(["run", recipe, "--store", dir.path + "/store-2", "--set", "stages.distill.ranks=1", "--json"])
        #expect(statuses(again)["distill"] == "cached", "\(again.stdout)")

        // SIGKILL rank 1 once rank 0 has recorded a checkpoint: the stage fails naming it; the next run resumes
        // from it and ends with the weights of the uninterrupted runs.
        let store = try copy(base, dir.path + "/killed")
        let running = try CLI.start(["run", recipe, "--store", store, "--set", "stages.distill.ranks=2", "--json"])
        let deadline = Date().addingTimeInterval(180)
        var killed: Int32?
        while running.process.isRunning, Date() < deadline, killed == nil {
            usleep(10_000)
            guard checkpointRecorded(store) else { continue }
            killed = rankProcess(store: store, rank: 1)
            if let pid = killed { kill(pid, SIGKILL) }
        }
        running.process.waitUntilExit()
        let first = running.result()
        let pid = try #require(killed, "the run ended before a checkpoint and rank 1 were seen: \(first.stderr)")
        #expect(first.status == 1, "\(first.stderr)")
        #expect(statuses(first)["distill"] == "failed", "\(first.stdout)")
        #expect(first.stderr.contains("the 2 data-parallel ranks (mpirun)"), "killed pid \(pid): \(first.stderr)")
        #expect(first.stderr.contains("is kept; run again to resume from it"), "killed pid \(pid): \(first.stderr)")

        let second = try CLI.run(["run", recipe, "--store", store, "--set", "stages.distill.ranks=2", "--json"], timeout: 240)
        #expect(second.status == 0, "\(second.stderr)")
        let resumed = try stageMetric(second, store: store, stage: "distill", "resumed_from_step")
        #expect(resumed.count == 1 && resumed[0] >= 3 && resumed[0] < 12, "\(resumed)")
        #expect(outputDigests(second)["distill"]?["model"] == expected)

        // Started by the user as `mpirun -np 2 hprune run`: rank 0 drives (teacher and student alone), and the
        // distillation trains on both ranks (the recipe's `ranks: 1` aside) with the same weights.
        let launched = try copy(base, dir.path + "/launched")
        let m = try mpirun(["-np", "2", "--bind-to", "none", CLI.binary.path, "run", recipe, "--store", launched, "--json"])
        #expect(m.status == 0, "\(m.stderr)")
        #expect(statuses(m)["distill"] == "ran", "\(m.stdout)\n\(m.stderr)")
        #expect(outputDigests(m)["distill"]?["model"] == expected)
        let log = try stageLog(m, store: launched, stage: "distill")
        #expect(log.contains("micro-batches: 4 of 2 (batch 8), summed in order over Open MPI") && log.contains("2 ranks"), "\(log)")
    }

    @Test func ranksNeedEnoughMicroBatchesAtValidate() throws {
        let dir = TemporaryDirectory()
        let recipe = dataParallelRecipe(dir)
        let r = try CLI.run(["validate", recipe, "--set", "stages.distill.ranks=2", "--set", "stages.distill.micro_batch=8"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("'ranks: 2' but 'batch: 8' in micro-batches of 8 is only 1 micro-batch"), "\(r.stderr)")
        let whole = dir.write("whole.yaml", try String(contentsOfFile: recipe, encoding: .utf8).replacingOccurrences(of: "    micro_batch: 2\n", with: ""))
        let none = try CLI.run(["validate", whole, "--set", "stages.distill.ranks=2"])
        #expect(none.status == 2)
        #expect(none.stderr.contains("'ranks: 2' needs 'micro_batch'"), "\(none.stderr)")
    }

    @Test func withoutMPIRanksFailNamingWhatToInstall() throws {
        let dir = TemporaryDirectory()
        let recipe = dataParallelRecipe(dir)
        // A PATH without mpirun (the binary is run by its full path, so hprune itself is found).
        let r = try CLI.run(["run", recipe, "--store", dir.path + "/s", "--set", "stages.distill.ranks=2"],
                            environment: ["PATH": "/nonexistent"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("`ranks: 2` needs `mpirun`, which is not on PATH: install Open MPI"), "\(r.stderr)")
        #expect(r.stderr.contains("or set `ranks: 1`"), "\(r.stderr)")
    }
}

/// `mpirun args…` (Open MPI refuses root unless told; CI runs as root), waited for; stdout is rank 0's.
func mpirun(_ args: [String], timeout: Double = 240) throws -> CLIResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["mpirun"] + args
    var env = ProcessInfo.processInfo.environment
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env.removeValue(forKey: "HPRUNE_STORE")
    p.environment = env
    let dir = FileManager.default.temporaryDirectory
    let out = dir.appendingPathComponent("mpirun-\(UUID().uuidString).out"), err = dir.appendingPathComponent("mpirun-\(UUID().uuidString).err")
    FileManager.default.createFile(atPath: out.path, contents: nil)
    FileManager.default.createFile(atPath: err.path, contents: nil)
    p.standardOutput = try FileHandle(forWritingTo: out)
    p.standardError = try FileHandle(forWritingTo: err)
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning { p.terminate() }
    p.waitUntilExit()
    return Running(process: p, out: out, err: err).result()
}

/// The log tail of `stage` in the run of `run`'s JSON.
func stageLog(_ run: CLIResult, store: String, stage: String) throws -> String {
    let id = try #require(jsonObject(run.stdout)?["run"] as? String)
    return try CLI.run(["show", id, "--store", store, "--log", stage]).stdout
}

/// Whether a training checkpoint (a partial result, `partials/<action key>/checkpoint.json`) exists in `store`.
func checkpointRecorded(_ store: String) -> Bool {
    // Training checkpoints are partial results: partials/<action key>/checkpoint.json.
    let root = store + "/partials"
    return ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).contains {
        FileManager.default.fileExists(atPath: root + "/" + $0 + "/checkpoint.json")
    }
}

/// The pid of data-parallel rank `rank` working on `store` (its command line has `--data-parallel` and the store;
/// Open MPI puts the rank in its environment as OMPI_COMM_WORLD_RANK).
func rankProcess(store: String, rank: Int) -> Int32? {
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(entry),
              let cmd = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
              let env = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
        let args = cmd.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard args.contains("--data-parallel"), args.contains(store) else { continue }
        let vars = env.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        if vars.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
    }
    return nil
}
