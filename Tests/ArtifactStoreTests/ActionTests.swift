// The action cache: records round-trip, know every object they need, and a broken one is evicted, never fatal.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct ActionTests {
    let key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

    @Test func recordAndLookUp() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let out = try store.put(Data("result".utf8))
        #expect(store.action(for: key) == nil)
        let created = Date(timeIntervalSince1970: 1_790_000_000.25)
        let stored = try store.recordAction(ActionRecord(key: key, stage: "prune", kind: "command",
                                                          outputs: ["out": out], createdAt: created, seconds: 1.5,
                                                          extra: ["kindVersion": "1"]))
        #expect(stored.objectSizes == [out.hex: 6])
        let found = try #require(store.action(for: key))
        #expect(found == stored)
        #expect(found.createdAt == created)
        #expect(FileManager.default.fileExists(atPath: dir.path + "/actions/9f/\(key).json"))
        #expect(store.actionKeys() == [key])
    }

    @Test func recordNeedsItsOutputs() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let ghost = Digest.of(Data("ghost".utf8))
        #expect(throws: StoreError.missing(ghost, path: store.path(of: ghost).path)) {
            try store.recordAction(ActionRecord(key: key, stage: "s", kind: "k", outputs: ["o": ghost], seconds: 0))
        }
        #expect(throws: StoreError.invalidKey("../etc")) {
            try store.recordAction(ActionRecord(key: "../etc", stage: "s", kind: "k", outputs: [:], seconds: 0))
        }
        #expect(store.action(for: "../etc") == nil)
    }

    @Test func treeOutputsAndManifestReferencesAreInTheClosure() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        try write("one", to: dir.sub("o/1.txt"))
        try write("two", to: dir.sub("o/sub/2.txt"))
        let tree = try store.putTree(dir.sub("o"))
        // A model manifest names its tensors by digest; one digest-like string names nothing stored.
        let w1 = try store.put(pseudoRandomData(count: 1000, seed: 1))
        let w2 = try store.put(pseudoRandomData(count: 2000, seed: 2))
        let unrelated = String(repeating: "0", count: 64)
        let manifest = try store.put(Data("""
            {"config":{"layers":2},"tensors":{"a":{"digest":"\(w1.hex)"},"b":{"digest":"\(w2.hex)"}},"seed":"\(unrelated)"}
            """.utf8))
        let record = try store.recordAction(ActionRecord(key: key, stage: "s", kind: "k",
                                                          outputs: ["files": tree, "model": manifest], seconds: 0))
        let expected: Set<String> = [tree, manifest, w1, w2, Digest.of(Data("one".utf8)), Digest.of(Data("two".utf8))]
            .reduce(into: []) { $0.insert($1.hex) }
        #expect(Set(record.objectSizes.keys) == expected)
        #expect(record.objectSizes[w2.hex] == 2000)

        // Losing a tensor the manifest needs makes the record stale: evicted, reported, stage re-runs.
        let log = WarningLog()
        let again = try ArtifactStore(root: dir.sub("store"), onWarning: log.handler)
        try FileManager.default.removeItem(at: again.path(of: w2))
        #expect(again.action(for: key) == nil)
        #expect(log.warnings.count == 1)
        #expect(log.warnings[0].message.contains(w2.short))
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/store/actions/9f/\(key).json"))
    }

    @Test func unreadableRecordIsEvictedWithAWarning() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let log = WarningLog()
        let store = try ArtifactStore(root: dir.url, onWarning: log.handler)
        let out = try store.put(Data("result".utf8))
        try store.recordAction(ActionRecord(key: key, stage: "s", kind: "k", outputs: ["o": out], seconds: 0))
        let path = dir.path + "/actions/9f/\(key).json"
        chmod(path, 0o644)
        try Data("{\"key\": \"trunc".utf8).write(to: URL(fileURLWithPath: path))
        #expect(store.action(for: key) == nil)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(log.warnings.count == 1 && log.warnings[0].path == path)
        #expect(log.warnings[0].description.contains("warning: action record is unreadable"))
        // A record filed under the wrong key is also evicted.
        try store.recordAction(ActionRecord(key: key, stage: "s", kind: "k", outputs: ["o": out], seconds: 0))
        let other = "aa" + key.dropFirst(2)
        try FileManager.default.createDirectory(atPath: dir.path + "/actions/aa", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: path, toPath: dir.path + "/actions/aa/\(other).json")
        #expect(store.action(for: other) == nil)
        #expect(store.action(for: key) != nil)
    }

    @Test func wrongSizedOutputEvictsRecordAndObject() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let log = WarningLog()
        let store = try ArtifactStore(root: dir.url, onWarning: log.handler)
        let out = try store.put(Data("result".utf8))
        try store.recordAction(ActionRecord(key: key, stage: "s", kind: "k", outputs: ["o": out], seconds: 0))
        let path = store.path(of: out).path
        chmod(path, 0o644)
        try Data("resul".utf8).write(to: URL(fileURLWithPath: path))
        #expect(store.action(for: key) == nil)
        #expect(!store.contains(out))
        #expect(log.warnings.count == 2)
    }
}
