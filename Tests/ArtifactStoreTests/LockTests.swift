// Action locks and stage scratch folders: one holder at a time, released on release (or process death, which the
// CLI tests cover with kill -9), and a folder counts as stale only once nobody holds its lock.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct LockTests {
    @Test func anActionLockHasOneHolderAndIsRemovedOnRelease() throws {
        let dir = try TempDir("locks")
        defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let key = String(repeating: "ab", count: 32)
        let first = try #require(try store.tryLockAction(key))
        #expect(try store.tryLockAction(key) == nil)
        // Another store instance (as another process would) sees it held too.
        let other = try ArtifactStore(root: dir.url)
        #expect(try other.tryLockAction(key) == nil)
        first.release()
        #expect(!FileManager.default.fileExists(atPath: first.path))
        let second = try #require(try other.tryLockAction(key))
        second.release()
        #expect(throws: StoreError.self) { try store.tryLockAction("../x") }
    }

    @Test func waitingForAnActionLockEndsWhenItIsReleased() async throws {
        let dir = try TempDir("locks")
        defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let key = String(repeating: "cd", count: 32)
        let held = try #require(try store.tryLockAction(key))
        let waited = LockedFlag()
        let task = Task { try await store.lockAction(key) { waited.set() } }
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(waited.value)
        held.release()
        let lock = try await task.value
        lock.release()
        // Cancelling a waiter ends its wait.
        let again = try #require(try store.tryLockAction(key))
        let cancelled = Task { try await store.lockAction(key) }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        again.release()
    }

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

private final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set() { lock.withLock { flag = true } }
    var value: Bool { lock.withLock { flag } }
}
