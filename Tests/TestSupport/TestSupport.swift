// Helpers shared by the test targets: temporary directories with real files, and timing bounds.
import Foundation
import YAMLSupport

/// A fresh directory under the system temp dir, removed when the value is deinitialised.
public final class TemporaryDirectory: @unchecked Sendable {
    public let path: String

    public init(prefix: String = "hprune-test") {
        let base = FileManager.default.temporaryDirectory.path
        let name = "\(prefix)-\(UUID().uuidString.prefix(8))"
        path = (base as NSString).appendingPathComponent(name)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `text` to `name` (relative; intermediate folders are created) and returns the full path.
    @discardableResult
    public func write(_ name: String, _ text: String) -> String {
        write(name, bytes: Array(text.utf8))
    }

    /// Writes raw bytes to `name` and returns the full path.
    @discardableResult
    public func write(_ name: String, bytes: [UInt8]) -> String {
        let full = (path as NSString).appendingPathComponent(name)
        let dir = (full as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: full, contents: Data(bytes))
        return full
    }
}

/// Runs `body` and returns its result with the elapsed time in seconds.
public func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
    let clock = ContinuousClock()
    var result: T?
    let elapsed = try clock.measure { result = try body() }
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    return (result!, seconds)
}

/// Runs `body` and returns its result with the CPU time this thread spent, in seconds. Unlike wall time this
/// does not grow when other processes load the machine, so bounds on it are stable.
public func cpuTimed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
    func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
    let start = now()
    let result = try body()
    return (result, now() - start)
}

/// The diagnostics a YAML parse throws, or [] if it succeeds.
public func parseDiagnostics(_ bytes: [UInt8], file: String = "t.yaml",
                             limits: YAMLLimits = .default) -> [Diagnostic] {
    do {
        _ = try YAMLParser.parse(bytes, file: file, limits: limits)
        return []
    } catch {
        return error.diagnostics
    }
}

extension TemporaryDirectory {
    public var url: URL { URL(fileURLWithPath: path) }
}

/// The repository root (for fixtures and recipes), found from this file's location.
public func repositoryRoot(_ file: StaticString = #filePath) -> URL {
    var url = URL(fileURLWithPath: "\(file)")
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
    }
    return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
}

/// Whether any diagnostic's one-line form contains all of `parts`.
public func contains(_ diagnostics: [Diagnostic], _ parts: String...) -> Bool {
    diagnostics.contains { d in parts.allSatisfy { d.description.contains($0) } }
}
