// The `command` stage kind: runs an external program (an argument array, no shell) with declared inputs
// and outputs. Inputs arrive as directories named in `HPRUNE_IN_<NAME>`; the program writes its declared
// outputs into `HPRUNE_OUT`. Used for external scorers and evaluators (GenEval, HPSv2 in Python, …).
import ArtifactStore
import Foundation
import Scheduler
import StageGraph
import YAMLSupport

public struct CommandStage: TypedStageKind {
    public init() {}
    public let name = "command"
    public let version = 1
    public let summary = "Run an external program with declared input and output files."
    public var usesBackend: Bool { false }

    public let schema = Schema([
        Field("run", .list(.string, minCount: 1), required: true,
              doc: "The program and its arguments, e.g. `[python3, score.py, --fast]`. No shell is involved; write `[sh, -c, \"…\"]` to use one. A program name without `/` is looked up in `PATH`; a relative path is relative to the recipe's folder, which is also the working directory."),
        Field("inputs", .dictionary(.reference(.any)), default: .map([]),
              doc: "Name → reference (`stage`, `stage.output`, a model or dataset). Each input's files are given as a directory in the environment variable `HPRUNE_IN_<NAME>` (name upper-cased, `-` → `_`)."),
        Field("outputs", .list(.string), default: .list([]),
              doc: "File names the program must write into the directory `HPRUNE_OUT`. Each is also an output port (`stage.<file>`); the port `files` holds them all."),
        Field("env", .dictionary(.string), default: .map([]),
              doc: "Extra environment variables. The program also gets `HPRUNE_STAGE`, `HPRUNE_SEED`, `HPRUNE_OUT` and `HPRUNE_IN_*`."),
        Field("deps", .list(.string), default: .list([]),
              doc: "Files (relative to the recipe) whose content is part of the cache key, e.g. the script the program runs: editing it re-runs the stage."),
        Field("timeout", .number(min: 0, exclusive: true),
              doc: "Seconds before the program is stopped and the stage fails."),
    ])

    public struct Params: Decodable {
        var run: [String]
        /// Input name → the reference written.
        var inputs: [String: String]
        var outputs: [String]
        var env: [String: String]
        var deps: [String]
        var timeout: Double?
    }

    // `outputs` and `fileDependencies` read the params raw: they also see params that failed the schema check
    // (the graph still lists a broken stage's ports, so references to it are not reported twice).
    public func outputs(params: ParamValue) -> [PortSpec] {
        let files = (params["outputs"]?.list ?? []).compactMap(\.string)
        return [PortSpec("files", .files, doc: "all declared outputs")] + files.map { PortSpec($0, .files, doc: "the file \($0)") }
    }

    public func defaultOutput(params: ParamValue) -> String { "files" }

    public func fileDependencies(params: ParamValue) -> [String] {
        (params["deps"]?.list ?? []).compactMap(\.string)
    }

    public func check(params: ParamValue, node: YAMLNode, checker: inout SchemaChecker) {
        var seen: Set<String> = []
        for (i, item) in (node["outputs"]?.items ?? []).enumerated() {
            guard let f = item.string else { continue }
            if f.isEmpty || f.contains("/") || f == "." || f == ".." || f == "files" {
                checker.error("'outputs[\(i)]': '\(f)' must be a plain file name (no '/'; 'files' is reserved)", item.mark)
            }
            if !seen.insert(f).inserted { checker.error("'outputs[\(i)]': '\(f)' is declared twice", item.mark) }
        }
        for pair in node["inputs"]?.pairs ?? [] {
            guard let n = pair.key.scalarText else { continue }
            let ok = n.first.map { $0.isLetter || $0 == "_" } ?? false
                && n.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
            if !ok {
                checker.error("input name '\(n)' must be letters, digits, '_' or '-' (it becomes HPRUNE_IN_\(n.uppercased()))", pair.key.mark)
            }
        }
    }

    public func run(_ ctx: StageContext) async throws -> [String: Digest] {
        let p = try params(ctx)
        let argv = p.run, declared = p.outputs
        let fm = FileManager.default
        let inDir = ctx.workDirectory.appendingPathComponent("in")
        let outDir = ctx.workDirectory.appendingPathComponent("out")
        try fm.createDirectory(at: outDir, withIntermediateDirectories: true)

        var env = ProcessInfo.processInfo.environment
        for (k, v) in p.env { env[k] = v }
        env["HPRUNE_OUT"] = outDir.path
        env["HPRUNE_STAGE"] = ctx.stage.name
        env["HPRUNE_SEED"] = String(ctx.seed)
        for name in p.inputs.keys.sorted() {
            guard let artifact = ctx.input("inputs.\(name)") else { continue }
            let dir = inDir.appendingPathComponent(name)
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            if let src = artifact.sourcePath {
                var isDir: ObjCBool = false
                _ = fm.fileExists(atPath: src.path, isDirectory: &isDir)
                if isDir.boolValue {
                    try fm.removeItem(at: dir)
                    try fm.createSymbolicLink(at: dir, withDestinationURL: src)
                } else {
                    try fm.createSymbolicLink(at: dir.appendingPathComponent(src.lastPathComponent), withDestinationURL: src)
                }
            } else if artifact.type == .files {
                try ctx.store.materializeTree(artifact.digest, into: dir)
            } else {
                try ctx.store.data(artifact.digest).write(to: dir.appendingPathComponent("\(artifact.type.rawValue).json"))
            }
            env["HPRUNE_IN_" + name.uppercased().replacingOccurrences(of: "-", with: "_")] = dir.path
        }

        guard let program = Self.resolveProgram(argv[0], in: ctx.recipeDirectory, path: env["PATH"] ?? "/usr/bin:/bin") else {
            throw StageFailure("program '\(argv[0])' not found (looked in PATH and relative to \(ctx.recipeDirectory.path)); check `run:`")
        }
        let timeout = p.timeout
        let (status, signalled, out, err) = try await Self.runProcess(program, arguments: Array(argv.dropFirst()), environment: env,
                                                                      directory: ctx.recipeDirectory, logDirectory: ctx.workDirectory,
                                                                      timeout: timeout)
        if !out.isEmpty { ctx.recorder.log("--- stdout ---\n" + out) }
        if !err.isEmpty { ctx.recorder.log("--- stderr ---\n" + err) }
        if Task.isCancelled { throw CancellationError() }

        let command = argv.joined(separator: " ")
        if signalled {
            let reason = timeout.map { "timed out after \(YAMLNode.formatDouble($0))s or " } ?? ""
            throw StageFailure("`\(command)` \(reason)was killed by signal \(status)", log: Self.tail(err))
        }
        if status != 0 {
            throw StageFailure("`\(command)` exited with status \(status)" + Self.tailSuffix(err), log: Self.tail(err))
        }
        let missing = declared.filter { !fm.fileExists(atPath: outDir.appendingPathComponent($0).path) }
        if !missing.isEmpty {
            throw StageFailure("`\(command)` did not write declared output\(missing.count == 1 ? "" : "s") "
                               + missing.map { "'\($0)'" }.joined(separator: ", ") + " into $HPRUNE_OUT" + Self.tailSuffix(err),
                               log: Self.tail(err))
        }
        var result: [String: Digest] = ["files": try ctx.store.putTree(outDir)]
        for (i, file) in declared.enumerated() {
            let single = ctx.workDirectory.appendingPathComponent("port-\(i)")
            try fm.createDirectory(at: single, withIntermediateDirectories: true)
            try fm.linkItem(at: outDir.appendingPathComponent(file), to: single.appendingPathComponent(file))
            result[file] = try ctx.store.putTree(single)
        }
        return result
    }

    /// Runs `program` to completion with stdout/stderr in `logDirectory` (`stdout.log`, `stderr.log`), no stdin;
    /// cancellable (SIGTERM to its process group, then SIGKILL) and stopped after `timeout` seconds. Foundation
    /// starts the program as the leader of a new process group, so children it spawned stop with it.
    /// Returns (status, killed by a signal, stdout text, stderr text).
    static func runProcess(_ program: URL, arguments: [String], environment: [String: String], directory: URL,
                           logDirectory: URL, timeout: Double?) async throws -> (Int32, Bool, String, String) {
        let fm = FileManager.default
        let stdoutURL = logDirectory.appendingPathComponent("stdout.log"), stderrURL = logDirectory.appendingPathComponent("stderr.log")
        _ = fm.createFile(atPath: stdoutURL.path, contents: nil)
        _ = fm.createFile(atPath: stderrURL.path, contents: nil)
        let stdout = try FileHandle(forWritingTo: stdoutURL), stderr = try FileHandle(forWritingTo: stderrURL)
        defer { try? stdout.close(); try? stderr.close() }
        let process = Process()
        process.executableURL = program
        process.arguments = arguments
        process.environment = environment
        process.currentDirectoryURL = directory
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        let status: Int32 = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Int32, Error>) in
                process.terminationHandler = { p in cont.resume(returning: p.terminationStatus) }
                do { try process.run() } catch {
                    process.terminationHandler = nil
                    cont.resume(throwing: StageFailure("could not start '\(program.path)': \(PlainError.describe(error))"))
                    return
                }
                if let timeout {
                    let pid = process.processIdentifier
                    DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
                        if process.isRunning, process.processIdentifier == pid { Self.stop(process) }
                    }
                }
            }
        } onCancel: {
            Self.stop(process)
        }
        try? stdout.synchronize()
        try? stderr.synchronize()
        let out = (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
        return (status, process.terminationReason == .uncaughtSignal, out, err)
    }

    /// SIGTERM to the program's process group, then SIGKILL after two seconds if anything is left.
    static func stop(_ process: Process) {
        guard process.isRunning else { return }
        let pid = process.processIdentifier
        kill(-pid, SIGTERM)
        kill(pid, SIGTERM)
        DispatchQueue.global().asyncAfter(deadline: .now() + 2) {
            kill(-pid, SIGKILL)
            if process.isRunning, process.processIdentifier == pid { kill(pid, SIGKILL) }
        }
    }

    static func resolveProgram(_ name: String, in directory: URL, path: String) -> URL? {
        let fm = FileManager.default
        if name.contains("/") {
            let url = name.hasPrefix("/") ? URL(fileURLWithPath: name) : directory.appendingPathComponent(name)
            return fm.isExecutableFile(atPath: url.path) ? url.standardizedFileURL : nil
        }
        for dir in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(dir)).appendingPathComponent(name)
            if fm.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return nil
    }

    static func tail(_ text: String, lines: Int = 20) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    static func tailSuffix(_ err: String) -> String {
        let t = tail(err, lines: 10).trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? "" : "; stderr ends with:\n" + t.split(separator: "\n").map { "    | " + $0 }.joined(separator: "\n")
    }
}
