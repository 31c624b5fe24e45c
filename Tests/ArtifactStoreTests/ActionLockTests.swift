// Per-action lock files: one holder at a time (threads and processes), the owner recorded in the file, the
// heartbeat moving its mtime, and stale locks (dead process on this host; silent owner elsewhere) broken.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct ActionLockTests {
    @Test func oneHolderAtATimeAndTheOwnerIsRecorded() async throws {
        let dir = try TempDir("lock")
        defer { dir.remove() }
        let path = dir.path + "/locks/ab/abc.lock"
        let first = try await ActionLock.acquire(path: path, what: "stage 'x'")
        let owner = try #require(ActionLock.readOwner(path))
        #expect(owner == first.owner)
        #expect(owner.pid == getpid() && owner.host == Ledger.hostName && owner.what == "stage 'x'")

        // A second acquirer waits (and says whom for) until the first releases.
        let waitedFor = Box<LockOwner?>(nil)
        let second = Task {
            try await ActionLock.acquire(path: path, what: "stage 'y'", poll: 0.02, onWait: { waitedFor.value = $0 })
        }
        try await Task.sleep(for: .milliseconds(300))
        #expect(waitedFor.value == first.owner)
        #expect(ActionLock.readOwner(path) == first.owner)
        first.release()
        let got = try await second.value
        #expect(ActionLock.readOwner(path) == got.owner)
        got.release()
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func manyConcurrentAcquirersNeverOverlap() async throws {
        let dir = try TempDir("lock")
        defer { dir.remove() }
        let path = dir.path + "/k.lock"
        let inside = Box(0), maxInside = Box(0), total = Box(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<8 {
                group.addTask {
                    let lock = try await ActionLock.acquire(path: path, what: "t\(i)", poll: 0.005)
                    let now = inside.update { $0 += 1; return $0 }
                    maxInside.update { $0 = max($0, now); return $0 }
                    try await Task.sleep(for: .milliseconds(20))
                    inside.update { $0 -= 1; return $0 }
                    total.update { $0 += 1; return $0 }
                    lock.release()
                }
            }
            try await group.waitForAll()
        }
        #expect(maxInside.value == 1)
        #expect(total.value == 8)
    }

    @Test func aLockOfADeadProcessOnThisHostIsBrokenAtOnce() async throws {
        let dir = try TempDir("lock")
        defer { dir.remove() }
        let path = dir.path + "/k.lock"
        // A child that exits leaves a pid that is no longer alive.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        let dead = LockOwner(host: Ledger.hostName, pid: p.processIdentifier, token: "dead", since: 0, what: "crashed job")
        #expect(try ActionLock.tryCreate(path: path, owner: dead))
        let broken = Box<String?>(nil)
        let start = ContinuousClock.now
        let lock = try await ActionLock.acquire(path: path, what: "me", staleAfter: 60, onBreak: { _, why in broken.value = why })
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(broken.value?.contains("its process \(p.processIdentifier) on this host is gone") == true)
        #expect(ActionLock.readOwner(path) == lock.owner)
        lock.release()
    }

    @Test func aSilentOwnerOnAnotherHostIsBrokenAfterStaleAfter() async throws {
        let dir = try TempDir("lock")
        defer { dir.remove() }
        let path = dir.path + "/k.lock"
        let other = LockOwner(host: "node-17", pid: 4242, token: "far", since: 0, what: "slurm job 9")
        #expect(try ActionLock.tryCreate(path: path, owner: other))
        let start = ContinuousClock.now
        let lock = try await ActionLock.acquire(path: path, what: "me", staleAfter: 1.0, poll: 0.05)
        let waited = ContinuousClock.now - start
        // Not broken early; the upper bound is loose because a loaded test run can starve the polling task.
        #expect(waited >= .seconds(1) && waited < .seconds(120), "\(waited)")
        #expect(ActionLock.readOwner(path) == lock.owner)
        lock.release()
    }

    @Test func aLiveHolderKeepsItsLockByHeartbeat() async throws {
        let dir = try TempDir("lock")
        defer { dir.remove() }
        let path = dir.path + "/k.lock"
        // The waiter breaks locks whose mtime stands still for 0.5 s; the holder's 0.1 s heartbeat prevents that.
        let holder = try await ActionLock.acquire(path: path, what: "holder", heartbeat: 0.1)
        let stat0 = try #require(POSIX.stat(path))
        try await Task.sleep(for: .milliseconds(400))
        let stat1 = try #require(POSIX.stat(path))
        #expect(POSIX.mtimeNanoseconds(stat1) > POSIX.mtimeNanoseconds(stat0))
        let waiter = Task { try await ActionLock.acquire(path: path, what: "waiter", staleAfter: 0.5, poll: 0.05) }
        try await Task.sleep(for: .milliseconds(1500))
        #expect(ActionLock.readOwner(path) == holder.owner)  // never broken: its mtime keeps moving
        #expect(!holder.lost)
        holder.release()
        let w = try await waiter.value
        w.release()
    }

    @Test func waitingIsCancellable() async throws {
        let dir = try TempDir("lock")
        defer { dir.remove() }
        let path = dir.path + "/k.lock"
        let holder = try await ActionLock.acquire(path: path, what: "holder")
        let waiter = Task { try await ActionLock.acquire(path: path, what: "waiter", poll: 0.05) }
        try await Task.sleep(for: .milliseconds(200))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(ActionLock.readOwner(path) == holder.owner)
        holder.release()
    }
}

/// A value shared between tasks in a test.
final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
    @discardableResult
    func update(_ body: (inout T) -> T) -> T { lock.withLock { body(&stored) } }
}
