// Stage scratch folders: one holder at a time, released on release (or process death, which the CLI tests cover
// with kill -9), and a folder counts as stale only once nobody holds its lock. (Action locks: ActionLockTests.)
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct LockTests {
    @Test func onlyUnheldStageFoldersAreStale() throws {
        let dir = try TempDir("locks")
        defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let live = try store.makeStageDirectory()
        // A folder left by a killed stage: its lock file exists but nobody holds it; one from before locks existed.
        let dead = dir.path + "/tmp/stage-DEAD"
        try FileManager.default.createDirectory(atPath: dead, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dead + ".lock", contents: Data("123\n".utf8))
        let old = dir.path + "/tmp/stage-OLD"
        try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: true)
        #expect(store.staleStageDirectories(remove: false) == [dead, old])
        #expect(FileManager.default.fileExists(atPath: dead))
        #expect(store.staleStageDirectories(remove: true) == [dead, old])
        #expect(!FileManager.default.fileExists(atPath: dead) && !FileManager.default.fileExists(atPath: dead + ".lock"))
        #expect(FileManager.default.fileExists(atPath: live.url.path))
        live.remove()
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/tmp")
        #expect(left.isEmpty, "\(left)")
    }
}
