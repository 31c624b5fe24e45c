// Helpers for the store tests: throw-away directories, file writing, and warning capture.
import Foundation
import Testing
@testable import ArtifactStore

/// A fresh directory under the system temp folder, removed by `remove()`.
struct TempDir {
    let url: URL
    var path: String { url.path }

    init(_ label: String = "store") throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("hprune-\(label)-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func sub(_ name: String) -> URL { url.appendingPathComponent(name) }

    func remove() {
        // Stored objects are read-only; make everything writable so the folder can be deleted.
        if let walker = FileManager.default.enumerator(atPath: path) {
            for case let name as String in walker { chmod(path + "/" + name, 0o755) }
        }
        try? FileManager.default.removeItem(at: url)
    }
}

/// Writes `text` to `url`, creating parent folders.
func write(_ text: String, to url: URL) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(text.utf8).write(to: url)
}

/// Sets a file's modification time (to make it look settled for source hashing).
func setModified(_ url: URL, secondsAgo: Double) throws {
    try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -secondsAgo)],
                                          ofItemAtPath: url.path)
}

/// Overwrites one byte of a file in place (objects are read-only, so the mode is lifted first).
func flipByte(at offset: Int, of path: String) throws {
    chmod(path, 0o644)
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    let old = try handle.read(upToCount: 1) ?? Data([0])
    try handle.seek(toOffset: UInt64(offset))
    try handle.write(contentsOf: Data([old[0] ^ 0xff]))
}

/// Collects the warnings a store reports.
final class WarningLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [StoreWarning] = []
    var handler: @Sendable (StoreWarning) -> Void { { [self] w in lock.lock(); items.append(w); lock.unlock() } }
    var warnings: [StoreWarning] { lock.lock(); defer { lock.unlock() }; return items }
}

/// Deterministic pseudo-random bytes (xorshift), so big test files need no fixtures.
func pseudoRandomData(count: Int, seed: UInt64) -> Data {
    var state = seed << 1 | 1  // odd and distinct per seed (xorshift must not start at 0)
    var data = Data(count: count)
    data.withUnsafeMutableBytes { raw in
        let bytes = raw.bindMemory(to: UInt8.self)
        var i = 0
        while i < count {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            var word = state
            for _ in 0..<8 where i < count {
                bytes[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
    }
    return data
}
