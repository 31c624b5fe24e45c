// Partial results (partials/<namespace>/<name>.json → an object): written atomically and replaced in place, read
// back verified, broken records removed by reads and by `verify`, kept by `gc` while a kept run's execution owns
// them; action records keep their canonical JSON (checked against the key); and a store of the previous layout
// (Tests/Fixtures/store-v1, written by the old binary) opens, verifies clean and keeps its records readable.
import Foundation
import Testing
import TestSupport
@testable import ArtifactStore

@Suite struct PartialsTests {
    @Test func putReadReplaceListAndRemove() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        #expect(store.partial(namespace: "ns-1", name: "blocks.3") == nil)
        let a = try store.putPartial(Data("one".utf8), namespace: "ns-1", name: "blocks.3", owner: "k1", stage: "score")
        #expect(store.partialData(namespace: "ns-1", name: "blocks.3") == Data("one".utf8))
        let read = try #require(store.partial(namespace: "ns-1", name: "blocks.3"))
        #expect(read.digest == a.digest && read.owner == "k1" && read.size == 3 && read.stage == "score")
        // Replaced in place: the record now names the new object.
        let b = try store.putPartial(Data("two".utf8), namespace: "ns-1", name: "blocks.3", owner: "k2", stage: "score",
                                     extra: ["step": "4"])
        #expect(b.digest != a.digest && store.partial(namespace: "ns-1", name: "blocks.3")?.extra == ["step": "4"])
        #expect(store.partialData(namespace: "ns-1", name: "blocks.3") == Data("two".utf8))
        try store.putPartial(Data("ref".utf8), namespace: "ns-1", name: "reference", owner: "k2", stage: "score")
        try store.putPartial(Data("x".utf8), namespace: "ns-2", name: "checkpoint", owner: "k3", stage: "train")
        #expect(store.partialNamespaces() == ["ns-1", "ns-2"])
        #expect(store.partialNames(in: "ns-1") == ["blocks.3", "reference"])
        // Partials are not actions: nothing under actions/ was written.
        #expect(store.actionKeys().isEmpty)
        #expect(try store.diskUsage().partials == 3)
        store.removePartials(namespace: "ns-1")
        #expect(store.partialNamespaces() == ["ns-2"] && store.partial(namespace: "ns-1", name: "reference") == nil)
        // Names are key-like: no path separators, no leading dot.
        #expect(throws: StoreError.self) { try store.putPartial(Data(), namespace: "../x", name: "n1", owner: "", stage: "s") }
        #expect(throws: StoreError.self) { try store.putPartial(Data(), namespace: "ns", name: ".hidden", owner: "", stage: "s") }
    }

    @Test func brokenRecordsAreRemovedByReadsAndReportedByVerify() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let warnings = WarningLog()
        let store = try ArtifactStore(root: dir.sub("store"), onWarning: warnings.handler)
        let r = try store.putPartial(Data("value".utf8), namespace: "ns", name: "gone", owner: "k", stage: "s")
        try store.putPartial(Data("other".utf8), namespace: "ns", name: "garbled", owner: "k", stage: "s")
        try FileManager.default.removeItem(atPath: store.objectPath(r.digest))
        let garbled = store.partialPath("ns", "garbled")
        chmod(garbled, 0o644)
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: garbled))
        let report = try store.verify()
        #expect(report.partialsChecked == 2)
        #expect(report.brokenPartials.count == 2 && !report.isClean, "\(report)")
        #expect(store.partialNames(in: "ns").isEmpty, "both broken records were removed")
        #expect(try store.verify().isClean)

        try store.putPartial(Data("again".utf8), namespace: "ns", name: "gone", owner: "k", stage: "s")
        try FileManager.default.removeItem(atPath: store.objectPath(Digest.of(Data("again".utf8))))
        #expect(store.partial(namespace: "ns", name: "gone") == nil)
        #expect(warnings.warnings.contains { $0.description.contains("removed the partial result") }, "\(warnings.warnings)")
    }

    @Test func gcKeepsThePartialsOfKeptRunsOnly() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.sub("store"))
        func run(_ stage: String, key: String, status: StageStatus, at t: Date) throws {
            let id = try store.ledger.beginRun(RunStart(recipePath: "r.yaml", recipeName: "r", recipeText: "", recipeDigest: "",
                                                        resolvedJSON: "{}", backend: "cpu", device: "cpu", version: "0"), at: t)
            try store.ledger.recordStage(StageExecution(run: id, stage: stage, kind: "train", key: key, status: status, seconds: 0))
            try store.ledger.endRun(id, status: status == .ran ? .succeeded : .cancelled, at: t)
        }
        let t = Date(timeIntervalSinceNow: -3600)
        try run("old", key: "key-old", status: .ran, at: t)
        try run("new", key: "key-new", status: .cancelled, at: t.addingTimeInterval(60))  // an interrupted run
        let old = try store.putPartial(Data("old state".utf8), namespace: "key-old", name: "checkpoint", owner: "key-old",
                                       stage: "old", createdAt: t.addingTimeInterval(10))
        let new = try store.putPartial(Data("new state".utf8), namespace: "key-new", name: "checkpoint", owner: "key-new",
                                       stage: "new", createdAt: t.addingTimeInterval(70))
        // Written (now) after the oldest kept run started, by an execution the ledger never recorded (a killed run).
        let killed = try store.putPartial(Data("killed".utf8), namespace: "key-killed", name: "checkpoint", owner: "key-killed", stage: "k")
        let dry = try store.gc(keepingRuns: 1, dryRun: true)
        #expect(dry.keptPartials == ["key-killed", "key-new"] && dry.removedPartials == ["key-old"])
        #expect(store.partial(namespace: "key-old", name: "checkpoint") != nil, "a dry run removes nothing")
        let report = try store.gc(keepingRuns: 1, dryRun: false)
        #expect(report.removedPartials == ["key-old"])
        #expect(store.partial(namespace: "key-old", name: "checkpoint") == nil && !store.contains(old.digest))
        #expect(store.partialData(namespace: "key-new", name: "checkpoint") == Data("new state".utf8))
        #expect(store.contains(new.digest) && store.contains(killed.digest))
        #expect(try store.verify().isClean)
        // Keeping no runs keeps no partials.
        _ = try store.gc(keepingRuns: 0, dryRun: false)
        #expect(store.partialNamespaces().isEmpty)
    }

    @Test func actionRecordsKeepTheirCanonicalJSONCheckedAgainstTheKey() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let warnings = WarningLog()
        let store = try ArtifactStore(root: dir.sub("store"), onWarning: warnings.handler)
        let out = try store.put(Data("out".utf8))
        let json = #"{"kind":"k","params":{"x":1}}"#
        let key = Digest.of(Data(json.utf8)).hex
        try store.recordAction(ActionRecord(key: key, stage: "s", kind: "k", outputs: ["o": out], seconds: 0, canonical: json))
        #expect(store.action(for: key)?.canonical == json)
        // A record whose JSON does not hash to its key is broken (evicted; the stage re-runs).
        let other = String(repeating: "ab", count: 32)
        try store.recordAction(ActionRecord(key: other, stage: "s", kind: "k", outputs: ["o": out], seconds: 0, canonical: json))
        #expect(store.action(for: other) == nil)
        #expect(warnings.warnings.contains { $0.description.contains("does not hash to its key") }, "\(warnings.warnings)")
        // And the ledger keeps the same JSON by key.
        try store.ledger.recordActionInput(key: key, canonical: json)
        try store.ledger.recordActionInput(key: key, canonical: "ignored: the first one wins")
        #expect(try store.ledger.actionInput(key: key) == json)
        #expect(try store.ledger.actionInput(key: other) == nil)
    }

    /// The store in Tests/Fixtures/store-v1 was written by the previous binary: ledger schema 1, action records
    /// without canonical JSON, score parts and a training checkpoint as pseudo-action records.
    @Test func aStoreOfThePreviousLayoutStaysReadable() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let fixture = repositoryRoot().appendingPathComponent("Tests/Fixtures/store-v1/store")
        let root = dir.sub("store")
        try FileManager.default.copyItem(at: fixture, to: root)
        let oldKeys = (try FileManager.default.subpathsOfDirectory(atPath: root.path + "/actions"))
            .filter { $0.hasSuffix(".json") }.map { String(($0 as NSString).lastPathComponent.dropLast(5)) }.sorted()
        #expect(oldKeys.filter { $0.hasPrefix("ckpt-") }.count == 1 && oldKeys.filter { $0.hasPrefix("score-") }.count == 2, "\(oldKeys)")

        let warnings = WarningLog()
        let store = try ArtifactStore(root: root, onWarning: warnings.handler)   // migrates the ledger to schema 2
        let run = try #require(try store.ledger.runs().first)
        #expect(run.start.recipeName == "store-v1" && run.status == .succeeded)
        let stages = try store.ledger.stages(of: run.id)
        #expect(stages.map(\.stage) == ["hello", "teacher", "score"])
        for s in stages {
            let record = try #require(store.action(for: s.key), "\(s.stage)")
            #expect(record.canonical == nil && record.outputs == s.outputs)
            #expect(try store.ledger.actionInput(key: s.key) == nil)   // old runs simply have no inputs recorded
        }
        #expect(store.actionKeys() == oldKeys)
        #expect(store.partialNamespaces().isEmpty)
        let report = try store.verify()
        #expect(report.isClean, "\(report)")
        #expect(report.actionsChecked == oldKeys.count && report.partialsChecked == 0)
        #expect(warnings.warnings.isEmpty, "\(warnings.warnings)")
        // gc drops the pseudo-action records (no run names them) and keeps the real ones.
        let gc = try store.gc(keepingRuns: 10, dryRun: false)
        #expect(Set(gc.removedActions) == Set(oldKeys.filter { $0.hasPrefix("ckpt-") || $0.hasPrefix("score-") }))
        #expect(Set(store.actionKeys()) == Set(stages.map(\.key)))
        #expect(try store.verify().isClean)
        // And the migrated ledger records new inputs.
        try store.ledger.recordActionInput(key: stages[0].key, canonical: "{}")
        #expect(try store.ledger.actionInput(key: stages[0].key) == "{}")
    }
}
