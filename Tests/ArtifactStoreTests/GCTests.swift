// Garbage collection keeps what the last N runs and the pins reach (through trees and manifests) and nothing else.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct GCTests {
    /// Records a run with one cached action whose output is `bytes`; returns the output digest.
    func run(_ store: ArtifactStore, _ name: String, key: String, output: Data, at date: Date) throws -> Digest {
        let id = try store.ledger.beginRun(
            RunStart(recipePath: "\(name).yaml", recipeName: name, recipeText: "", recipeDigest: "", resolvedJSON: "{}",
                     backend: "cpu", device: "cpu", version: "0"), at: date)
        let out = try store.put(output)
        try store.recordAction(ActionRecord(key: key, stage: name, kind: "command", outputs: ["out": out], seconds: 0))
        try store.ledger.recordStage(StageExecution(run: id, stage: name, kind: "command", key: key, status: .ran,
                                                    seconds: 0, outputs: ["out": out]))
        try store.ledger.endRun(id, status: .succeeded, at: date)
        return out
    }

    @Test func keepsReachableRemovesTheRest() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        let t = Date(timeIntervalSince1970: 1_790_000_000)
        let old = try run(store, "old", key: "key-old", output: Data("old output".utf8), at: t)
        // The newer run's output is a manifest naming a tensor, and a tree output.
        let tensor = try store.put(pseudoRandomData(count: 4096, seed: 9))
        let manifestBytes = Data("{\"tensors\":{\"w\":\"\(tensor.hex)\"}}".utf8)
        let manifest = try run(store, "new", key: "key-new", output: manifestBytes, at: t.addingTimeInterval(60))
        try write("file in tree", to: dir.sub("tree/f.txt"))
        let tree = try store.putTree(dir.sub("tree"))
        try store.recordAction(ActionRecord(key: "key-tree", stage: "t", kind: "command", outputs: ["dir": tree], seconds: 0))
        let id = try store.ledger.runs(limit: 1)[0].id
        try store.ledger.recordStage(StageExecution(run: id, stage: "t", kind: "command", key: "key-tree", status: .cached,
                                                    seconds: 0))
        let orphan = try store.put(Data("nobody uses me".utf8))
        let pinned = try store.put(Data("keep me".utf8))
        try store.ledger.pin(.object, pinned.hex, note: "baseline")
        let before = try store.list().map(\.digest)

        let dry = try store.gc(keepingRuns: 1, dryRun: true)
        #expect(dry.dryRun)
        #expect(Set(dry.removedObjects) == [old, orphan])
        #expect(dry.removedActions == ["key-old"])
        #expect(try store.list().map(\.digest) == before, "a dry run deletes nothing")
        #expect(store.action(for: "key-old") != nil)

        let report = try store.gc(keepingRuns: 1, dryRun: false)
        #expect(Set(report.removedObjects) == [old, orphan])
        #expect(report.removedBytes == Int64("old output".utf8.count + "nobody uses me".utf8.count))
        #expect(report.keptRuns == [id.rawValue])
        for kept in [manifest, tensor, tree, Digest.of(Data("file in tree".utf8)), pinned] {
            #expect(store.contains(kept), "\(kept.short) is reachable")
        }
        #expect(!store.contains(old) && !store.contains(orphan))
        #expect(store.action(for: "key-old") == nil)
        #expect(store.action(for: "key-new") != nil && store.action(for: "key-tree") != nil)
        #expect(try store.verify().isClean)

        // Keeping two runs brings nothing back but keeps what is there; pinning an action keeps it without runs.
        try store.ledger.pin(.action, "key-tree")
        let none = try store.gc(keepingRuns: 0, dryRun: false)
        #expect(Set(none.removedObjects) == [manifest, tensor])
        #expect(store.contains(tree) && store.contains(pinned))
    }

    @Test func gcRefusesWhileAnotherStoreIsOpen() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        do {
            let other = try ArtifactStore(root: dir.url)
            #expect(throws: StoreError.busy(path: dir.path)) { try store.gc(dryRun: false) }
            _ = try store.gc(dryRun: true)
            _ = other
        }
        _ = try store.gc(dryRun: false)
        // The store is still usable (its shared lock was taken back).
        let third = try ArtifactStore(root: dir.url)
        #expect(throws: StoreError.busy(path: dir.path)) { try third.gc(dryRun: false) }
    }

    @Test func usageAndList() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        try store.put(Data("12345".utf8))
        try store.put(Data("123".utf8))
        let usage = try store.diskUsage()
        #expect(usage.objects == 2 && usage.objectBytes == 8)
        #expect(usage.ledgerBytes > 0)
        #expect(usage.totalBytes >= 8)
        #expect(try store.list().map(\.size).sorted() == [3, 5])
    }
}
