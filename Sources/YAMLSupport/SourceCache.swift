// The text of every input a diagnostic may point into: files read lazily from disk, or registered in memory
// (what the loader actually parsed, and `--set` values that exist only on the command line).
import Foundation

/// File name → source lines, for printing the line under a diagnostic. Thread-safe.
///
/// ```swift
/// let sources = SourceCache()
/// sources.register("a.b=[1", for: "<--set 1>")
/// sources.line(1, of: "recipes/x.yaml")   // read from disk on first use
/// ```
public final class SourceCache: @unchecked Sendable {
    private struct Entry {
        var bytes: [UInt8]
        /// Byte offset where each line starts (index 0 = line 1); computed on first use.
        var lineStarts: [Int]?
    }

    private let lock = NSLock()
    /// `nil` entries remember files that could not be read, so they are not retried.
    private var entries: [String: Entry?] = [:]

    public init() {}

    /// Registers in-memory text under `file`, replacing anything known for it.
    public func register(_ text: String, for file: String) {
        register(bytes: Array(text.utf8), for: file)
    }

    /// Registers raw bytes (as parsed) under `file`, replacing anything known for it.
    public func register(bytes: [UInt8], for file: String) {
        lock.lock()
        defer { lock.unlock() }
        entries[file] = Entry(bytes: bytes, lineStarts: nil)
    }

    /// The 1-based line `number` of `file`, without its line break; nil if the file or line is not there.
    /// Invalid UTF-8 is shown as U+FFFD.
    public func line(_ number: Int, of file: String) -> String? {
        lineBytes(number, of: file).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The raw bytes of line `number` of `file`, without its line break (for escaping invalid UTF-8 visibly).
    public func lineBytes(_ number: Int, of file: String) -> ArraySlice<UInt8>? {
        lock.lock()
        defer { lock.unlock() }
        if entries[file] == nil {
            entries[file] = FileManager.default.contents(atPath: file).map { Entry(bytes: [UInt8]($0)) }
        }
        guard var entry = entries[file] ?? nil else { return nil }
        if entry.lineStarts == nil {
            var starts = [0]
            for (i, b) in entry.bytes.enumerated() where b == 0x0A { starts.append(i + 1) }
            entry.lineStarts = starts
            entries[file] = entry
        }
        guard let starts = entry.lineStarts, number >= 1, number <= starts.count else { return nil }
        let start = starts[number - 1]
        var end = number < starts.count ? starts[number] - 1 : entry.bytes.count
        if end > start, entry.bytes[end - 1] == 0x0D { end -= 1 }
        return entry.bytes[start..<max(start, end)]
    }
}
