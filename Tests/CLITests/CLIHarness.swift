// Runs the real `hprune` binary (built by `swift test` because this target depends on it) and captures
// its exit code, stdout and stderr.
import Foundation
import TestSupport

struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double
}

enum CLI {
    /// The built binary, next to the test bundle.
    static let binary: URL = {
        if let env = ProcessInfo.processInfo.environment["HPRUNE_BIN"] { return URL(fileURLWithPath: env) }
        var candidates: [URL] = []
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(dir.appendingPathComponent("hprune"))
            dir.deleteLastPathComponent()
        }
        candidates.append(repositoryRoot().appendingPathComponent(".build/debug/hprune"))
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates.last!
    }()

    /// Runs `hprune args…` in `directory`, with `environment` added, and waits.
    @discardableResult
    static func run(_ args: [String], in directory: String? = nil, environment: [String: String] = [:],
                    timeout: Double = 120) throws -> CLIResult {
        let running = try start(args, in: directory, environment: environment)
        let start = ContinuousClock.now
        let deadline = Date().addingTimeInterval(timeout)
        while running.process.isRunning && Date() < deadline { usleep(2000) }
        if running.process.isRunning { running.process.terminate() }
        running.process.waitUntilExit()
        let d = ContinuousClock.now - start
        return running.result(seconds: Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
    }

    /// Starts `hprune args…` without waiting; output goes to temp files so the child never blocks.
    static func start(_ args: [String], in directory: String? = nil,
                      environment: [String: String] = [:]) throws -> Running {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        env.removeValue(forKey: "HPRUNE_STORE")
        for (k, v) in environment { env[k] = v }
        p.environment = env
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let tmp = FileManager.default.temporaryDirectory
        let out = tmp.appendingPathComponent("hprune-cli-\(UUID().uuidString).out")
        let err = tmp.appendingPathComponent("hprune-cli-\(UUID().uuidString).err")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        FileManager.default.createFile(atPath: err.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return Running(process: p, out: out, err: err)
    }
}

struct Running {
    var process: Process
    var out: URL
    var err: URL

    func result(seconds: Double = 0) -> CLIResult {
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        return CLIResult(status: process.terminationStatus,
                         stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "", seconds: seconds)
    }
}

/// A JSON object from text.
func jsonObject(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}
