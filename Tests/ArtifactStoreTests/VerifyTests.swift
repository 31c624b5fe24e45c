// `verify()` re-hashes everything and removes what is damaged, so the stages that made it re-run.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct VerifyTests {
    @Test func findsAndEvictsDamage() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let log = WarningLog()
        let store = try ArtifactStore(root: dir.url, onWarning: log.handler)
        let good = try store.put(Data("good".utf8))
        let bad = try store.put(Data("bad!".utf8))
        try store.recordAction(ActionRecord(key: "k-good", stage: "g", kind: "k", outputs: ["o": good], seconds: 0))
        try store.recordAction(ActionRecord(key: "k-bad", stage: "b", kind: "k", outputs: ["o": bad], seconds: 0))
        #expect(try store.verify().isClean)

        try flipByte(at: 0, of: store.path(of: bad).path)
        try write("junk", to: dir.sub("objects/sha256/zz/not-an-object"))
        try write("left by a crash", to: dir.sub("tmp/1-old.tmp"))
        try setModified(dir.sub("tmp/1-old.tmp"), secondsAgo: 3600)

        let report = try store.verify()
        #expect(!report.isClean)
        #expect(report.objectsChecked == 2)
        #expect(report.corruptObjects.map(\.path) == [store.path(of: bad).path])
        #expect(report.strayFiles.map(\.path) == [dir.path + "/objects/sha256/zz"])
        #expect(report.brokenActions.map(\.path) == [dir.path + "/actions/k-/k-bad.json"])
        #expect(report.staleTempFiles == 1)
        #expect(report.ledgerProblems.isEmpty)
        #expect(store.action(for: "k-good") != nil && store.action(for: "k-bad") == nil)
        #expect(try store.verify().isClean, "a second verify finds the store repaired")
    }
}
