// A reference process (Python with PyTorch) driven one JSON line per request, so that our runs and the
// reference's can alternate repetition by repetition (`bench kernels`, `bench model`).
import Foundation

/// A running Python script that reads one JSON request per line on stdin and answers one JSON line on stdout.
///
/// Its first line is a greeting with `"ready": true`; a reply with an `"error"` key becomes a thrown
/// `BenchError.python`, as does the process ending. The script is written to a temporary file (removed when the
/// server goes away); on deinit stdin is closed and the process awaited.
public final class PythonServer {
    private let process = Process()
    private let input = Pipe(), output = Pipe(), errors = Pipe()
    private var buffer = Data()
    private let scriptURL: URL
    /// The greeting line (e.g. `torch`, the PyTorch version).
    public private(set) var greeting: [String: Any] = [:]

    /// Starts `python script arguments…`; `environment` entries are added to this process's environment.
    public init(python: String, script: String, name: String, arguments: [String], environment: [String: String] = [:]) throws {
        scriptURL = FileManager.default.temporaryDirectory.appendingPathComponent("hprune-\(name)-\(getpid()).py")
        try Data(script.utf8).write(to: scriptURL, options: .atomic)
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [scriptURL.path] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        do { try process.run() } catch {
            try? FileManager.default.removeItem(at: scriptURL)
            throw BenchError.python("cannot start '\(python)': \(error.localizedDescription) (pass a Python with torch, and diffusers for `bench model`)")
        }
        greeting = try readReply()
        guard greeting["ready"] as? Bool == true else { throw BenchError.python("unexpected greeting \(greeting)") }
    }

    /// Sends one request and returns the decoded reply.
    public func request(_ r: [String: Any]) throws -> [String: Any] {
        var line = try JSONSerialization.data(withJSONObject: r)
        line.append(0x0A)
        input.fileHandleForWriting.write(line)
        let reply = try readReply()
        if let e = reply["error"] as? String { throw BenchError.python(e) }
        return reply
    }

    private func readReply() throws -> [String: Any] {
        while true {
            if let nl = buffer.firstIndex(of: 0x0A) {
                let line = buffer[buffer.startIndex..<nl]
                buffer.removeSubrange(buffer.startIndex...nl)
                guard let obj = try? JSONSerialization.jsonObject(with: line) as? [String: Any] else {
                    throw BenchError.python("bad reply: \(String(decoding: line, as: UTF8.self))")
                }
                return obj
            }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty {  // the process ended
                let err = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                throw BenchError.python("the Python process exited: \(err.suffix(2000))")
            }
            buffer.append(chunk)
        }
    }

    deinit {
        if process.isRunning {
            input.fileHandleForWriting.closeFile()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: scriptURL)
    }
}

/// The median of `xs` (NaN when empty).
public func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    guard !s.isEmpty else { return .nan }
    return s.count % 2 == 1 ? s[s.count / 2] : 0.5 * (s[s.count / 2 - 1] + s[s.count / 2])
}
