// Throughput check for streaming hashing (run on demand: HPRUNE_STORE_BENCH=1 swift test --filter storeHashBench).
import Foundation
import Testing
@testable import ArtifactStore

@Test(.enabled(if: ProcessInfo.processInfo.environment["HPRUNE_STORE_BENCH"] != nil))
func storeHashBench() throws {
    let dir = try TempDir("bench"); defer { dir.remove() }
    let file = dir.sub("1g.bin")
    let chunk = pseudoRandomData(count: 64 << 20, seed: 1)
    _ = FileManager.default.createFile(atPath: file.path, contents: nil)
    let handle = try FileHandle(forWritingTo: file)
    for _ in 0..<16 { try handle.write(contentsOf: chunk) }
    try handle.close()
    try setModified(file, secondsAgo: 60)
    let store = try ArtifactStore(root: dir.sub("store"))
    func time(_ label: String, _ body: () throws -> Void) rethrows {
        let start = Date()
        try body()
        let s = Date().timeIntervalSince(start)
        print(String(format: "BENCH %@: %.2f s, %.0f MB/s", label, s, 1024 / s))
    }
    time("SHA-256 of 1 GiB in memory") { for _ in 0..<16 { _ = Digest.of(chunk) } }
    var digest: Digest? = nil
    try time("hashSource 1 GiB (cold)") { digest = try store.hashSource(at: file) }
    try time("hashSource 1 GiB (remembered)") { _ = try store.hashSource(at: file) }
    try time("putFile 1 GiB (hash + copy + fsync)") { let put = try store.putFile(at: file); #expect(put == digest) }
    try time("verify 1 GiB object") { try store.verify(digest!) }
}

@Test(.enabled(if: ProcessInfo.processInfo.environment["HPRUNE_STORE_BENCH"] != nil))
func storeOpenAndLookupBench() throws {
    let dir = try TempDir("bench"); defer { dir.remove() }
    let first = try ArtifactStore(root: dir.url)
    let out = try first.put(Data("x".utf8))
    let keys = (0..<100).map { Digest.of(Data("k\($0)".utf8)).hex }
    for key in keys { try first.recordAction(ActionRecord(key: key, stage: "s", kind: "k", outputs: ["o": out], seconds: 0)) }
    var start = Date()
    let store = try ArtifactStore(root: dir.url)
    print(String(format: "BENCH open existing store: %.1f ms", Date().timeIntervalSince(start) * 1000))
    start = Date()
    for key in keys { #expect(store.action(for: key) != nil) }
    print(String(format: "BENCH 100 action lookups: %.1f ms", Date().timeIntervalSince(start) * 1000))
}
