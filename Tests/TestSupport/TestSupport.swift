// Helpers shared by the test targets: temporary directories and files, and locating the built binary.
import Foundation
import YAMLSupport

/// A fresh temporary directory, removed when the value is released.
public final class TempDir: @unchecked Sendable {
    public let url: URL

    public init(_ prefix: String = "hprune-test") {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    public var path: String { url.path }

    /// Writes `text` to `name` (creating folders) and returns its path.
    @discardableResult
    public func write(_ name: String, _ text: String) -> String {
        let file = url.appendingPathComponent(name)
        try? FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? Data(text.utf8).write(to: file)
        return file.path
    }

    @discardableResult
    public func write(_ name: String, bytes: [UInt8]) -> String {
        let file = url.appendingPathComponent(name)
        try? FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? Data(bytes).write(to: file)
        return file.path
    }
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
