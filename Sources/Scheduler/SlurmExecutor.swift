// The Slurm executor: each stage that misses the cache becomes one `sbatch` job running `hprune _job` for exactly
// that action key against the same (shared) store. The driver polls `squeue`, streams the job's log, cancels its
// jobs with `scancel` when interrupted, and re-submits a job that died without a result up to `retries` times.
// Every Slurm command gets an argument array (Process), never a shell string; the job script is a fixed file.
import ArtifactStore
import Foundation
import RecipeLanguage
import StageGraph

/// Runs a stage somewhere else; the scheduler reads the outputs from the store's action record afterwards.
public protocol RemoteExecutor: Sendable {
    /// Runs the action `key` of `stage` to completion; returns `.ran`, or `.cached` if someone else had already
    /// recorded it. Throws `StageFailure` (with job ids) or `CancellationError`.
    func run(stage: StageNode, key: String, forced: Bool, shardable: Bool, progress: ProgressSink,
             recorder: StageRecorder) async throws -> StageStatus
}

/// What `hprune _job` writes when it ends (atomically, at the path the driver chose).
public struct JobResult: Codable, Sendable {
    public var status: String
    public var seconds: Double
    public var error: String?
    public var log: String?
    public var metrics: [JobMetric]
    /// Port → digest hex, written by rank 0 of a data-parallel group (`_job --data-parallel`), which records no action.
    public var outputs: [String: String]?
    public init(status: String, seconds: Double, error: String? = nil, log: String? = nil, metrics: [JobMetric] = [],
                outputs: [String: String]? = nil) {
        self.status = status
        self.seconds = seconds
        self.error = error
        self.log = log
        self.metrics = metrics
        self.outputs = outputs
    }
}

public struct JobMetric: Codable, Sendable {
    public var name: String
    public var value: Double
    public var unit: String
    public init(name: String, value: Double, unit: String) {
        self.name = name
        self.value = value
        self.unit = unit
    }
}

public struct SlurmExecutor: RemoteExecutor {
    public var store: ArtifactStore
    /// `[hprune binary, "_job", recipe, --set …, --store …, --backend …]`; the executor appends the stage's own.
    public var jobCommand: [String]
    /// Each stage's resources (recipe defaults with the stage's overrides).
    public var settings: @Sendable (String) -> SlurmSettings
    /// How often squeue is asked and the log read.
    public var pollInterval: TimeInterval = 0.5
    /// Said to the user even in quiet mode (a job died and is re-submitted).
    public var warn: @Sendable (String) -> Void = { _ in }

    public init(store: ArtifactStore, jobCommand: [String], settings: @escaping @Sendable (String) -> SlurmSettings) {
        self.store = store
        self.jobCommand = jobCommand
        self.settings = settings
    }

    /// `store/slurm/`: the job script, job logs (`logs/<stage>-<job>.log`) and job results.
    public var directory: URL { store.root.appendingPathComponent("slurm") }

    /// The job script every job runs: it only execs its arguments (the hprune command line).
    public static let jobScript = """
        #!/bin/sh
        # Written by hprune: every Slurm job it submits runs this file with the hprune command line as arguments.
        exec "$@"

        """

    func writeJobScript() throws -> String {
        let path = directory.appendingPathComponent("job.sh").path
        if (try? String(contentsOfFile: path, encoding: .utf8)) == Self.jobScript { return path }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let tmp = path + ".\(getpid()).\(UUID().uuidString).tmp"
        try Data(Self.jobScript.utf8).write(to: URL(fileURLWithPath: tmp))
        chmod(tmp, 0o755)
        guard rename(tmp, path) == 0 else { throw StageFailure("cannot write the Slurm job script \(path): errno \(errno)") }
        return path
    }

    public func run(stage: StageNode, key: String, forced: Bool, shardable: Bool, progress: ProgressSink,
                    recorder: StageRecorder) async throws -> StageStatus {
        let script = try writeJobScript()
        let logs = directory.appendingPathComponent("logs"), results = directory.appendingPathComponent("results")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: results, withIntermediateDirectories: true)
        let resources = settings(stage.name)
        if shardable, let shards = resources.shards, shards > 1 {
            try await runShards(stage: stage, key: key, count: shards, script: script, logs: logs, resources: resources,
                                progress: progress, recorder: recorder)
        }
        let retries = resources.retries ?? 1
        var attempt = 0
        while true {
            attempt += 1
            let resultPath = results.appendingPathComponent("\(key.prefix(16))-\(UUID().uuidString).json").path
            defer { try? FileManager.default.removeItem(atPath: resultPath) }
            let logPattern = logs.appendingPathComponent("\(stage.name)-%j.log").path
            var args = ["--parsable", "--job-name=hprune-\(stage.name)", "--output=\(logPattern)", "--export=ALL"]
            args += resources.sbatchArguments
            // A data-parallel stage (`ranks: N`) gets N tasks; in the job it starts its ranks with `srun`.
            if let ranks = stage.params["ranks"]?.int, ranks > 1 { args.append("--ntasks=\(ranks)") }
            args += [script] + jobCommand + ["--stage", stage.name, "--key", key, "--result", resultPath]
            if forced { args.append("--force") }
            let submitted = try await Slurm.command("sbatch", args)
            guard submitted.status == 0 else {
                throw StageFailure("sbatch refused the job of stage '\(stage.name)' (exit \(submitted.status)): "
                                   + submitted.stderr.trimmingCharacters(in: .whitespacesAndNewlines),
                                   log: "sbatch " + args.joined(separator: " "))
            }
            let job = String(submitted.stdout.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            guard !job.isEmpty, job.allSatisfy(\.isNumber) else {
                throw StageFailure("sbatch printed no job id for stage '\(stage.name)': '\(submitted.stdout.prefix(200))'")
            }
            let logPath = logPattern.replacingOccurrences(of: "%j", with: job)
            recorder.metric("slurm.job", Double(job) ?? 0, unit: "job")
            recorder.log("slurm job \(job) submitted (attempt \(attempt) of \(retries + 1)); log \(logPath)\n")
            progress.log("submitted as Slurm job \(job)" + (attempt > 1 ? " (attempt \(attempt) of \(retries + 1))" : ""))

            let state: String
            do {
                state = try await wait(job: job, logPath: logPath, progress: progress)
            } catch {
                // Interrupted: the job must not outlive the driver.
                _ = try? await Slurm.command("scancel", [job])
                recorder.log("slurm job \(job) cancelled (the run was interrupted)\n")
                progress.log("cancelled Slurm job \(job)")
                throw CancellationError()
            }
            if let data = FileManager.default.contents(atPath: resultPath),
               let result = try? JSONDecoder().decode(JobResult.self, from: data), result.status != "cancelled" {
                for m in result.metrics { recorder.metric(m.name, m.value, unit: m.unit) }
                if let log = result.log, !log.isEmpty { recorder.log(log + "\n") }
                recorder.log("slurm job \(job): \(result.status) (\(state))\n")
                switch result.status {
                case "ran": return .ran
                case "cached": return .cached
                default:
                    throw StageFailure("Slurm job \(job) (log \(logPath)): " + (result.error ?? "the stage failed"))
                }
            }
            let message = "Slurm job \(job) of stage '\(stage.name)' ended \(state) without a result (log \(logPath))"
            recorder.log(message + "\n")
            if attempt > retries {
                throw StageFailure(message + "; gave up after \(attempt) attempt\(attempt == 1 ? "" : "s")",
                                   log: "raise `slurm: { retries: N }` or the stage's `time:` if it was killed by the time limit")
            }
            warn(message + "; submitting it again (attempt \(attempt + 1) of \(retries + 1))")
        }
    }

    /// Fans the stage out as a job array of `count` tasks (`_job --shards count`, task = SLURM_ARRAY_TASK_ID), each
    /// keeping its parts in the store, and waits for all. A task that dies is only reported: the merge job that
    /// follows computes whatever is missing, so the result is the same either way.
    func runShards(stage: StageNode, key: String, count: Int, script: String, logs: URL, resources: SlurmSettings,
                   progress: ProgressSink, recorder: StageRecorder) async throws {
        let logPattern = logs.appendingPathComponent("\(stage.name)-%A_%a.log").path
        var args = ["--parsable", "--array=0-\(count - 1)", "--job-name=hprune-\(stage.name)-shards",
                    "--output=\(logPattern)", "--export=ALL"]
        args += resources.sbatchArguments
        args += [script] + jobCommand + ["--stage", stage.name, "--key", key, "--shards", String(count)]
        let submitted = try await Slurm.command("sbatch", args)
        let job = String(submitted.stdout.split(separator: ";").first ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard submitted.status == 0, !job.isEmpty, job.allSatisfy(\.isNumber) else {
            throw StageFailure("sbatch refused the job array of stage '\(stage.name)' (exit \(submitted.status)): "
                               + submitted.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        recorder.metric("slurm.array_job", Double(job) ?? 0, unit: "job")
        recorder.metric("slurm.shards", Double(count))
        recorder.log("slurm job array \(job) submitted: \(count) shards; logs \(logPattern)\n")
        progress.log("submitted \(count) shards as Slurm job array \(job)")
        let paths = (0..<count).map { logPattern.replacingOccurrences(of: "%A", with: job).replacingOccurrences(of: "%a", with: String($0)) }
        let states: String
        do {
            states = try await wait(job: job, logPaths: paths, progress: progress)
        } catch {
            _ = try? await Slurm.command("scancel", [job])
            progress.log("cancelled Slurm job array \(job)")
            throw CancellationError()
        }
        recorder.log("slurm job array \(job): \(states)\n")
        if states.split(separator: ",").contains(where: { $0 != "COMPLETED" }) {
            warn("Slurm job array \(job) of stage '\(stage.name)' ended \(states); the merge job computes what the failed shards left")
        }
    }

    /// Polls until the job leaves the queue; streams new log lines. Returns its final state (`COMPLETED`, …).
    func wait(job: String, logPath: String, progress: ProgressSink) async throws -> String {
        try await wait(job: job, logPaths: [logPath], progress: progress)
    }

    /// Polls until the job (or every task of a job array) has ended, streaming each log; returns the final
    /// state, or the tasks' states joined by commas.
    func wait(job: String, logPaths: [String], progress: ProgressSink) async throws -> String {
        var offsets = [UInt64](repeating: 0, count: logPaths.count)
        var pendings = [Data](repeating: Data(), count: logPaths.count)
        func drain() {
            for (i, logPath) in logPaths.enumerated() {
                guard let handle = FileHandle(forReadingAtPath: logPath) else { continue }
                defer { try? handle.close() }
                try? handle.seek(toOffset: offsets[i])
                let data = handle.readDataToEndOfFile()
                offsets[i] += UInt64(data.count)
                pendings[i].append(data)
                let label = logPaths.count == 1 ? job : "\(job)_\(i)"
                while let nl = pendings[i].firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pendings[i][pendings[i].startIndex..<nl], as: UTF8.self)
                    pendings[i].removeSubrange(pendings[i].startIndex...nl)
                    let shown = line.split(separator: "\r").last.map(String.init) ?? ""
                    if !shown.trimmingCharacters(in: .whitespaces).isEmpty { progress.log("[job \(label)] " + shown) }
                }
            }
        }
        while true {
            try await Task.sleep(for: .seconds(pollInterval))
            drain()
            let q = try await Slurm.command("squeue", ["--noheader", "--states=all", "--jobs=" + job, "--format=%T"])
            let taskStates = q.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            if logPaths.count > 1 {
                if q.status != 0 || taskStates.isEmpty { return "UNKNOWN" }
                if taskStates.allSatisfy(Slurm.terminalStates.contains) {
                    drain()
                    return taskStates.joined(separator: ",")
                }
                continue
            }
            let state = taskStates.count == 1 ? taskStates[0] : ""
            if q.status != 0 || state.isEmpty {
                // Gone from the queue (older than MinJobAge): ask accounting, if the cluster keeps it.
                let a = try? await Slurm.command("sacct", ["--noheader", "--allocations", "--parsable2", "--jobs=" + job, "--format=State"])
                drain()
                let s = a?.stdout.split(separator: "\n").first.map { String($0).trimmingCharacters(in: .whitespaces) } ?? ""
                return s.isEmpty ? "UNKNOWN" : String(s.split(separator: " ").first ?? "UNKNOWN")
            }
            if Slurm.terminalStates.contains(state) {
                drain()
                return state
            }
        }
    }
}

/// Running Slurm's client commands.
public enum Slurm {
    /// Job states after which a job will not run again by itself.
    public static let terminalStates: Set<String> = [
        "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
        "DEADLINE", "REVOKED", "SPECIAL_EXIT",
    ]

    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Whether `tool` (sbatch, squeue, …) is on PATH.
    public static func available(_ tool: String) -> Bool { path(of: tool) != nil }

    static func path(of tool: String) -> String? {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return dirs.map { "\($0)/\(tool)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `tool args…` (found on PATH) without a shell and collects its output.
    public static func command(_ tool: String, _ args: [String]) async throws -> Output {
        guard let exe = path(of: tool) else {
            throw StageFailure("'\(tool)' is not on PATH: the Slurm executor needs Slurm's client commands",
                               log: "install Slurm's client (Debian: slurm-client) or run with --executor local")
        }
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: exe)
                p.arguments = args
                let out = Pipe(), err = Pipe()
                p.standardOutput = out
                p.standardError = err
                p.standardInput = FileHandle.nullDevice
                do { try p.run() } catch {
                    continuation.resume(throwing: StageFailure("cannot start \(exe): \(error)"))
                    return
                }
                // Read both pipes to the end before waiting, so a chatty command never blocks on a full pipe.
                let errData = Collected()
                let group = DispatchGroup()
                group.enter()
                DispatchQueue.global().async {
                    errData.set(err.fileHandleForReading.readDataToEndOfFile())
                    group.leave()
                }
                let outData = out.fileHandleForReading.readDataToEndOfFile()
                group.wait()
                p.waitUntilExit()
                continuation.resume(returning: Output(status: p.terminationStatus,
                                                      stdout: String(decoding: outData, as: UTF8.self),
                                                      stderr: String(decoding: errData.get(), as: UTF8.self)))
            }
        }
    }
}

/// Bytes read on one thread and taken on another.
private final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.withLock { data = d } }
    func get() -> Data { lock.withLock { data } }
}
