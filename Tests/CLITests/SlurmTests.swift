// `run --executor slurm` for real, on the one-node localhost cluster of Tests/Slurm/start-cluster.sh: same
// digests as a local run, job ids in the ledger, a scancelled job re-submitted, two drivers on one store running
// every action once. Skipped (with the reason printed) when no cluster answers `sinfo`.
import Foundation
import Testing
import TestSupport

enum LocalSlurm {
    /// SLURM_CONF for the tests: the environment's, else the one start-cluster.sh writes.
    static let environment: [String: String] = {
        if let conf = ProcessInfo.processInfo.environment["SLURM_CONF"] { return ["SLURM_CONF": conf] }
        let conf = "/tmp/hprune-slurm/slurm.conf"
        return FileManager.default.fileExists(atPath: conf) ? ["SLURM_CONF": conf] : [:]
    }()

    /// Why the cluster cannot be used, or nil when `sinfo` shows a usable node.
    static let unavailable: String? = {
        let state = (try? tool("sinfo", ["-h", "-o", "%T"]))?.stdout ?? ""
        if state.contains("idle") || state.contains("mix") || state.contains("alloc") { return nil }
        let message = "SKIP: no local Slurm cluster (sinfo says '\(state.trimmingCharacters(in: .whitespacesAndNewlines))'); start one with `bash Tests/Slurm/start-cluster.sh`"
        print(message)
        return message
    }()

    static var available: Bool { unavailable == nil }

    /// Runs a Slurm client command (on PATH) with the cluster's environment.
    @discardableResult
    static func tool(_ name: String, _ args: [String]) throws -> (status: Int32, stdout: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [name] + args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Stage name → output digests of a `run --json`.
func outputDigests(_ r: CLIResult) -> [String: [String: String]] {
    let stages = (jsonObject(r.stdout)?["stages"] as? [[String: Any]]) ?? []
    return Dictionary(uniqueKeysWithValues: stages.map { ($0["name"] as! String, ($0["outputs"] as? [String: String]) ?? [:]) })
}

/// Two independent stages that each append a line to a counter file outside the store, then a third.
func countingRecipe(_ dir: TemporaryDirectory, tag: String, sleep: Int) -> String {
    dir.write("in.txt", "input\n")
    return dir.write("r.yaml", """
        recipe: 1
        name: counting
        executor: slurm
        slurm: { time: "10", cpus: 1, retries: 1 }
        datasets: { data: { path: in.txt } }
        stages:
          \(tag)_a:
            kind: command
            run: [sh, -c, 'echo run >> "\(dir.path)/count-a"; sleep \(sleep); echo a > "$HPRUNE_OUT/a.txt"']
            outputs: [a.txt]
          \(tag)_b:
            kind: command
            run: [sh, -c, 'echo run >> "\(dir.path)/count-b"; cat "$HPRUNE_IN_D/in.txt" > "$HPRUNE_OUT/b.txt"']
            inputs: { d: data }
            outputs: [b.txt]
          \(tag)_c:
            kind: command
            run: [sh, -c, 'echo run >> "\(dir.path)/count-c"; cat "$HPRUNE_IN_A/a.txt" "$HPRUNE_IN_B/b.txt" > "$HPRUNE_OUT/c.txt"']
            inputs: { a: \(tag)_a, b: \(tag)_b.b.txt }
            outputs: [c.txt]
        """)
}

func lines(_ path: String) -> Int {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
}

@Suite(.serialized, .enabled(if: LocalSlurm.available, "needs the local Slurm cluster (Tests/Slurm/start-cluster.sh)"))
struct SlurmTests {
    let env = LocalSlurm.environment

    @Test func slurmRunGivesLocalDigestsAndTheLedgerNamesTheJobs() throws {
        let dir = TemporaryDirectory()
        let recipe = countingRecipe(dir, tag: "same", sleep: 0)
        let local = try CLI.run(["run", recipe, "--executor", "local", "--store", dir.path + "/local", "--json"], environment: env)
        #expect(local.status == 0, "\(local.stderr)")
        let slurm = try CLI.run(["run", recipe, "--store", dir.path + "/slurm", "--json"], environment: env, timeout: 180)
        #expect(slurm.status == 0, "\(slurm.stderr)")
        #expect(statuses(slurm).values.allSatisfy { $0 == "ran" }, "\(slurm.stdout)")
        #expect(outputDigests(slurm) == outputDigests(local))
        #expect(!outputDigests(local).isEmpty)

        // The ledger names each stage's job, and those are real jobs of this cluster with our job names.
        let run = try #require(jsonObject(slurm.stdout)?["run"] as? String)
        let show = try CLI.run(["show", run, "--store", dir.path + "/slurm", "--json"])
        let metrics = (jsonObject(show.stdout)?["metrics"] as? [[String: Any]]) ?? []
        let jobs = metrics.filter { $0["name"] as? String == "slurm.job" }
        #expect(Set(jobs.compactMap { $0["stage"] as? String }) == ["same_a", "same_b", "same_c"], "\(show.stdout)")
        for j in jobs {
            let id = String(Int(j["value"] as? Double ?? 0))
            let q = try LocalSlurm.tool("squeue", ["-h", "--states=all", "-j", id, "-o", "%j %T"])
            #expect(q.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "hprune-\(j["stage"]!) COMPLETED", "job \(id): \(q.stdout)")
        }

        // Again on Slurm: everything cached, no job submitted.
        let again = try CLI.run(["run", recipe, "--store", dir.path + "/slurm", "--json"], environment: env)
        #expect(statuses(again).values.allSatisfy { $0 == "cached" }, "\(again.stdout)")
        #expect(!again.stderr.contains("submitted"))
    }

    /// The README's quickstart, shrunk (4 steps, 2 samples; evaluate without `memory` and `latency`, which measure
    /// the process and differ between two local runs too),
    /// locally and on Slurm with `score` fanned out over a 2-task job array: every artifact digest equal, and the
    /// merge job computed no component itself (both shards did, the merge only read them).
    @Test func quickstartOnSlurmWithScoreShardsGivesTheLocalDigests() throws {
        let dir = TemporaryDirectory()
        let recipe = repositoryRoot().appendingPathComponent("recipes/quickstart.yaml").path
        let small = ["--set", "vars.teacher_steps=4", "--set", "vars.distill_steps=4", "--set", "stages.score.samples=2",
                     "--set", "stages.evaluate.samples=2", "--set", "stages.evaluate.metrics=[fidelity, task]", "--json"]
        let local = try CLI.run(["run", recipe, "--store", dir.path + "/local"] + small, environment: env, timeout: 300)
        #expect(local.status == 0, "\(local.stderr)")
        let slurm = try CLI.run(["run", recipe, "--executor", "slurm", "--store", dir.path + "/slurm",
                                 "--set", "stages.score.slurm.shards=2"] + small, environment: env, timeout: 300)
        #expect(slurm.status == 0, "\(slurm.stderr)")
        #expect(statuses(slurm).count == 7 && statuses(slurm).values.allSatisfy { $0 == "ran" }, "\(slurm.stdout)")
        #expect(outputDigests(slurm) == outputDigests(local))

        let run = try #require(jsonObject(slurm.stdout)?["run"] as? String)
        let show = try CLI.run(["show", run, "--store", dir.path + "/slurm", "--json"])
        let metrics = (jsonObject(show.stdout)?["metrics"] as? [[String: Any]]) ?? []
        func metric(_ stage: String, _ name: String) -> [Double] {
            metrics.filter { $0["stage"] as? String == stage && $0["name"] as? String == name }.compactMap { $0["value"] as? Double }
        }
        #expect(Set(metrics.filter { $0["name"] as? String == "slurm.job" }.compactMap { $0["stage"] as? String }).count == 7)
        #expect(metric("score", "slurm.shards") == [2])
        #expect(metric("score", "slurm.array_job").count == 1)
        #expect(metric("score", "components_computed") == [0], "\(show.stdout)")
        #expect((metric("score", "components_resumed").first ?? 0) > 0, "\(show.stdout)")
    }

    @Test func scancelledJobIsReportedResubmittedAndTheStoreStaysClean() throws {
        let dir = TemporaryDirectory()
        let recipe = countingRecipe(dir, tag: "kill", sleep: 6)
        let store = dir.path + "/s"
        let driver = try CLI.start(["run", recipe, "--store", store, "--json"], environment: env)
        // Wait for the slow stage's job to run, then cancel it behind the driver's back.
        var job = ""
        let deadline = Date().addingTimeInterval(60)
        while job.isEmpty && Date() < deadline {
            job = try LocalSlurm.tool("squeue", ["-h", "-n", "hprune-kill_a", "-t", "RUNNING", "-o", "%i"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if job.isEmpty { usleep(200_000) }
        }
        try #require(!job.isEmpty, "the job of kill_a never ran")
        while lines(dir.path + "/count-a") == 0 && Date() < deadline { usleep(100_000) }  // its command has started
        try LocalSlurm.tool("scancel", [job])
        let end = Date().addingTimeInterval(120)
        while driver.process.isRunning && Date() < end { usleep(100_000) }
        if driver.process.isRunning { driver.process.terminate() }
        driver.process.waitUntilExit()
        let r = driver.result()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("Slurm job \(job) of stage 'kill_a' ended CANCELLED without a result"), "\(r.stderr)")
        #expect(r.stderr.contains("submitting it again (attempt 2 of 2)"), "\(r.stderr)")
        #expect(statuses(r).values.allSatisfy { $0 == "ran" }, "\(r.stdout)")
        #expect(lines(dir.path + "/count-a") == 2)  // the cancelled attempt, then the one that finished
        let verify = try CLI.run(["cache", "verify", "--store", store])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        // Nothing of the cancelled attempt is left in the store's scratch space, and its lock is gone.
        let tmp = (try? FileManager.default.contentsOfDirectory(atPath: store + "/tmp")) ?? []
        #expect(tmp.isEmpty, "\(tmp)")
        let locks = FileManager.default.enumerator(atPath: store + "/locks")?.allObjects.compactMap { $0 as? String }.filter { $0.hasSuffix(".lock") } ?? []
        #expect(locks.isEmpty, "\(locks)")
    }

    /// A stage that fails on its node is reported with the job id and is not re-submitted (it would fail again).
    @Test func aFailingStageIsReportedWithItsJobAndNotResubmitted() throws {
        let dir = TemporaryDirectory()
        let recipe = dir.write("f.yaml", """
            recipe: 1
            executor: slurm
            slurm: { retries: 3 }
            stages:
              bad: { kind: command, run: [sh, -c, 'echo broken >&2; exit 7'], outputs: [x.txt] }
            """)
        let r = try CLI.run(["run", recipe, "--store", dir.path + "/s"], environment: env, timeout: 120)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.range(of: #"error: stage 'bad' failed: Slurm job \d+ \(log /.*/slurm/logs/bad-\d+\.log\): `sh -c echo broken"#, options: .regularExpression) != nil, "\(r.stderr)")
        #expect(r.stderr.components(separatedBy: "submitted as Slurm job").count - 1 == 1, "\(r.stderr)")
    }

    @Test func ctrlCCancelsTheDriversJobs() throws {
        let dir = TemporaryDirectory()
        let recipe = countingRecipe(dir, tag: "int", sleep: 30)
        let store = dir.path + "/s"
        let driver = try CLI.start(["run", recipe, "--store", store], environment: env)
        var job = ""
        let deadline = Date().addingTimeInterval(60)
        while (job.isEmpty || lines(dir.path + "/count-a") == 0) && Date() < deadline {
            job = try LocalSlurm.tool("squeue", ["-h", "-n", "hprune-int_a", "-t", "RUNNING", "-o", "%i"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            usleep(100_000)
        }
        try #require(!job.isEmpty, "the job of int_a never ran")
        kill(driver.process.processIdentifier, SIGINT)
        let end = Date().addingTimeInterval(60)
        while driver.process.isRunning && Date() < end { usleep(100_000) }
        if driver.process.isRunning { driver.process.terminate() }
        driver.process.waitUntilExit()
        let r = driver.result()
        #expect(r.status == 130, "\(r.stderr)")
        #expect(r.stderr.contains("cancelled Slurm job \(job)"), "\(r.stderr)")
        // The job leaves the queue as CANCELLED well before its 30 s sleep would have ended.
        var state = ""
        for _ in 0..<100 {
            state = try LocalSlurm.tool("squeue", ["-h", "--states=all", "-j", job, "-o", "%T"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if state == "CANCELLED" { break }
            usleep(100_000)
        }
        #expect(state == "CANCELLED")
        #expect(lines(dir.path + "/count-c") == 0)
    }

    /// `distill` with `ranks: 2` on Slurm: the job gets 2 tasks (`--ntasks=2`) and starts its ranks with
    /// `srun --mpi=pmix`; the weights are those of a local one-process run.
    @Test func dataParallelDistillOnSlurmRunsItsRanksWithSrunAndGivesTheOneRankWeights() throws {
        guard LocalMPI.available else { return }
        let dir = TemporaryDirectory()
        let recipe = dataParallelRecipe(dir)
        let local = try CLI.run(["run", recipe, "--executor", "local", "--store", dir.path + "/local", "--json"], timeout: 300)
        #expect(local.status == 0, "\(local.stderr)")
        let store = dir.path + "/slurm"
        let slurm = try CLI.run(["run", recipe, "--executor", "slurm", "--store", store, "--set", "stages.distill.ranks=2", "--json"],
                                environment: env, timeout: 300)
        #expect(slurm.status == 0, "\(slurm.stderr)")
        #expect(statuses(slurm)["distill"] == "ran", "\(slurm.stdout)")
        #expect(outputDigests(slurm)["distill"] == outputDigests(local)["distill"])
        #expect(outputDigests(local)["distill"]?["model"] != nil)
        let log = try stageLog(slurm, store: store, stage: "distill")
        #expect(log.contains("srun --ntasks=2 --kill-on-bad-exit=1 --mpi=pmix"), "\(log)")
        #expect(log.contains("Open MPI") && log.contains("2 ranks"), "\(log)")
        // The job really had two tasks.
        let job = try #require(try stageMetric(slurm, store: store, stage: "distill", "slurm.job").first)
        let tasks = try LocalSlurm.tool("squeue", ["-h", "--states=all", "-j", String(Int(job)), "-o", "%C"]).stdout
        #expect(tasks.trimmingCharacters(in: .whitespacesAndNewlines) == "2", "job \(Int(job)): \(tasks)")
    }

    @Test func twoDriversOnOneStoreRunEveryActionOnce() throws {
        let dir = TemporaryDirectory()
        let recipe = countingRecipe(dir, tag: "two", sleep: 2)
        let store = dir.path + "/s"
        let first = try CLI.start(["run", recipe, "--store", store, "--json"], environment: env)
        let second = try CLI.start(["run", recipe, "--store", store, "--json"], environment: env)
        let end = Date().addingTimeInterval(150)
        while (first.process.isRunning || second.process.isRunning) && Date() < end { usleep(100_000) }
        for p in [first, second] where p.process.isRunning { p.process.terminate() }
        first.process.waitUntilExit()
        second.process.waitUntilExit()
        let a = first.result(), b = second.result()
        #expect(a.status == 0, "\(a.stderr)")
        #expect(b.status == 0, "\(b.stderr)")
        for stage in ["two_a", "two_b", "two_c"] {
            let ran = [statuses(a)[stage], statuses(b)[stage]].filter { $0 == "ran" }.count
            #expect(ran == 1, "\(stage): \(statuses(a)) \(statuses(b))")
        }
        for f in ["count-a", "count-b", "count-c"] { #expect(lines(dir.path + "/" + f) == 1, "\(f)") }
        #expect(outputDigests(a) == outputDigests(b))
    }
}

/// The per-action lock without Slurm: two local drivers on one store run each action once (the second waits for
/// the first, then finds it cached).
@Test func twoLocalDriversOnOneStoreRunEveryActionOnce() throws {
    let dir = TemporaryDirectory()
    let recipe = countingRecipe(dir, tag: "loc", sleep: 1)
    let store = dir.path + "/s"
    let args = ["run", recipe, "--executor", "local", "--store", store, "--json"]
    let first = try CLI.start(args), second = try CLI.start(args)
    let end = Date().addingTimeInterval(120)
    while (first.process.isRunning || second.process.isRunning) && Date() < end { usleep(50_000) }
    for p in [first, second] where p.process.isRunning { p.process.terminate() }
    first.process.waitUntilExit()
    second.process.waitUntilExit()
    let a = first.result(), b = second.result()
    #expect(a.status == 0 && b.status == 0, "\(a.stderr)\n\(b.stderr)")
    for f in ["count-a", "count-b", "count-c"] { #expect(lines(dir.path + "/" + f) == 1, "\(f)") }
    for stage in ["loc_a", "loc_b", "loc_c"] {
        #expect([statuses(a)[stage], statuses(b)[stage]].filter { $0 == "ran" }.count == 1, "\(stage)")
    }
}

/// Without Slurm's client on PATH, `--executor slurm` is invalid input (exit 2) and says what to do.
@Test func slurmExecutorWithoutSbatchExitsTwo() throws {
    let dir = TemporaryDirectory()
    let recipe = countingRecipe(dir, tag: "nopath", sleep: 0)
    let r = try CLI.run(["run", recipe, "--store", dir.path + "/s"], environment: ["PATH": "/nonexistent"])
    #expect(r.status == 2, "\(r.stderr)")
    #expect(r.stderr.contains("executor slurm: 'sbatch' and 'squeue' must be on PATH"), "\(r.stderr)")
    #expect(r.stderr.contains("--executor local"))
}

/// A job whose node derives a different action key than the driver planned refuses to run, naming both keys.
@Test func jobRefusesAnActionKeyItDoesNotDerive() throws {
    let dir = TemporaryDirectory()
    let recipe = countingRecipe(dir, tag: "key", sleep: 0)
    let result = dir.path + "/result.json"
    let bogus = String(repeating: "ab", count: 32)
    let r = try CLI.run(["_job", recipe, "--store", dir.path + "/s", "--backend", "cpu", "--stage", "key_b",
                         "--key", bogus, "--result", result])
    #expect(r.status == 1, "\(r.stderr)")
    let outcome = try #require(jsonObject((try? String(contentsOfFile: result, encoding: .utf8)) ?? ""))
    #expect(outcome["status"] as? String == "failed")
    let error = outcome["error"] as? String ?? ""
    #expect(error.contains("but the driver planned abababababab"), "\(error)")
    #expect(lines(dir.path + "/count-b") == 0)
    // An upstream stage that is not in the store is named too (the store must be shared by every node).
    let c = try CLI.run(["_job", recipe, "--store", dir.path + "/s", "--backend", "cpu", "--stage", "key_c",
                         "--key", bogus, "--result", result])
    #expect(c.status == 1)
    let upstream = try #require(jsonObject((try? String(contentsOfFile: result, encoding: .utf8)) ?? ""))
    #expect((upstream["error"] as? String ?? "").contains("upstream stages key_a, key_b not in the store"), "\(upstream)")
}
