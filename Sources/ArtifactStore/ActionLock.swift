// One action runs at a time per key, across processes and hosts sharing the store: `locks/<key>.lock` is created
// by link(2) (atomic on local filesystems and NFS), names its owner (host, pid, token) and is kept fresh by a
// heartbeat (mtime touched every few seconds). A lock whose owner is a dead process on this host, or whose mtime
// has not moved for `staleAfter` seconds as seen by the waiter's own clock, is broken; see Docs/scale-out.md.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Who holds an action lock: written as JSON into the lock file.
public struct LockOwner: Codable, Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var pid: Int32
    /// Unique per acquisition, so a breaker can tell this holder from a later one.
    public var token: String
    /// Seconds since 1970 when it was taken (informational: staleness uses the waiter's clock).
    public var since: Double
    /// What runs under it (`stage 'score'`, `slurm job 42`), for messages.
    public var what: String

    public var description: String { "\(what) (pid \(pid) on \(host))" }
}

/// A held per-action lock; `release()` it (or let it go out of scope) when the action is recorded.
public final class ActionLock: @unchecked Sendable {
    public let path: String
    public let owner: LockOwner
    private let timer: DispatchSourceTimer
    private let state = NSLock()
    private var released = false
    private var lostFlag = false

    /// How often the holder touches the lock file.
    public static let defaultHeartbeat: TimeInterval = 5
    /// How long a lock's mtime may stand still before a waiter breaks it (6 missed heartbeats).
    public static let defaultStaleAfter: TimeInterval = 30

    private init(path: String, owner: LockOwner, heartbeat: TimeInterval) {
        self.path = path
        self.owner = owner
        timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        timer.schedule(deadline: .now() + heartbeat, repeating: heartbeat)
        timer.setEventHandler { [weak self] in self?.beat() }
        timer.resume()
    }

    deinit { release() }

    /// Whether another process broke this lock (our heartbeat found someone else's token in the file).
    public var lost: Bool { state.withLock { lostFlag } }

    /// Touches the lock file if it is still ours; otherwise notes that it was lost.
    private func beat() {
        guard !state.withLock({ released }) else { return }
        guard ActionLock.readOwner(path)?.token == owner.token else {
            state.withLock { lostFlag = true }
            return
        }
        _ = utimes(path, nil)
    }

    /// Removes the lock file if it is still ours; idempotent.
    public func release() {
        let first = state.withLock { () -> Bool in
            defer { released = true }
            return !released
        }
        guard first else { return }
        timer.cancel()
        if ActionLock.readOwner(path)?.token == owner.token { try? POSIX.unlink(path) }
    }

    // MARK: Acquiring

    /// Takes the lock at `path`, waiting (cancellably) while a live owner holds it.
    ///
    /// - Parameters:
    ///   - onWait: called once per distinct holder we wait for (to say so to the user).
    ///   - onBreak: called when a stale lock is broken, with its owner and why.
    public static func acquire(path: String, what: String, heartbeat: TimeInterval = defaultHeartbeat,
                               staleAfter: TimeInterval = defaultStaleAfter, poll: TimeInterval = 0.2,
                               onWait: @Sendable (LockOwner) -> Void = { _ in },
                               onBreak: @Sendable (LockOwner, String) -> Void = { _, _ in }) async throws -> ActionLock {
        let dir = (path as NSString).deletingLastPathComponent
        try POSIX.mkdirs(dir)
        let me = LockOwner(host: Ledger.hostName, pid: getpid(), token: UUID().uuidString,
                           since: Date().timeIntervalSince1970, what: what)
        var announced: String?
        // The holder we are watching: its token, the (inode, mtime) last seen, and when (our clock) that changed.
        var watched: (token: String, signature: String, since: ContinuousClock.Instant)?
        while true {
            try Task.checkCancellation()
            if try tryCreate(path: path, owner: me) { return ActionLock(path: path, owner: me, heartbeat: heartbeat) }
            guard let (read, signature) = readOwnerAndSignature(path) else { continue }  // released meanwhile
            // An unreadable lock file (written by something else) is waited on like a silent owner, then broken.
            let holder = read ?? LockOwner(host: "?", pid: 0, token: "unreadable-" + signature, since: 0, what: "an unreadable lock file")
            if announced != holder.token {
                announced = holder.token
                onWait(holder)
            }
            var staleReason: String?
            if holder.host == Ledger.hostName, holder.pid > 0, kill(holder.pid, 0) != 0, errno == ESRCH {
                staleReason = "its process \(holder.pid) on this host is gone"
            } else if let w = watched, w.token == holder.token, w.signature == signature {
                let still = ContinuousClock.now - w.since
                if still > .seconds(staleAfter) {
                    staleReason = "its heartbeat stopped \(Int(staleAfter))s ago"
                }
            } else {
                watched = (holder.token, signature, .now)
            }
            if let staleReason, breakLock(path: path, holder: holder) {
                onBreak(holder, staleReason)
                watched = nil
                continue
            }
            try await Task.sleep(for: .seconds(poll))
        }
    }

    /// Creates the lock file with our owner record if absent: write a temp file, link(2) it to `path`.
    static func tryCreate(path: String, owner: LockOwner) throws -> Bool {
        let tmp = path + "." + owner.token + ".tmp"
        let data = try JSONEncoder().encode(owner)
        let fd = try POSIX.open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { try? POSIX.unlink(tmp) }
        // No fsync: after a crash an empty or torn lock file reads as an unreadable owner and is broken after
        // `staleAfter`; close(2) is enough for other NFS clients to see the content (close-to-open).
        do {
            try data.withUnsafeBytes { try POSIX.writeAll(fd, $0, path: tmp) }
        } catch {
            POSIX.close(fd)
            throw error
        }
        POSIX.close(fd)
        let code = POSIX.link(tmp, path)
        if code == 0 { return true }
        if code == EEXIST { return false }
        // On NFS a link whose reply was lost reports an error although it happened: two names mean it did.
        if let st = POSIX.stat(tmp), st.st_nlink == 2 { return true }
        throw StoreError.io(path: path, operation: "create lock", code: code)
    }

    /// Breaks `holder`'s lock: rename it aside (only one breaker wins), and if what we moved was someone else's
    /// newer lock, put it back (link fails if a third process already locked). Returns whether we removed it.
    static func breakLock(path: String, holder: LockOwner) -> Bool {
        let aside = path + ".broken-" + UUID().uuidString
        guard (try? POSIX.rename(path, aside)) != nil else { return false }
        defer { try? POSIX.unlink(aside) }
        let moved = readOwnerAndSignature(aside)
        if let moved, (moved.0?.token ?? ("unreadable-" + moved.1)) == holder.token { return true }
        _ = POSIX.link(aside, path)
        return false
    }

    /// The owner written in a lock file, or nil if absent or unreadable. Opening the file also revalidates its
    /// attributes on NFS (close-to-open consistency), so the signature below is fresh.
    static func readOwner(_ path: String) -> LockOwner? { readOwnerAndSignature(path)?.0 }

    /// The owner (nil if the file cannot be decoded) and the file's (inode, mtime); nil if there is no file.
    static func readOwnerAndSignature(_ path: String) -> (LockOwner?, String)? {
        guard let fd = try? POSIX.openIfExists(path) else { return nil }
        defer { POSIX.close(fd) }
        guard let st = try? POSIX.fstat(fd, path: path) else { return nil }
        let owner = (try? POSIX.readAll(fd, path: path)).flatMap { try? JSONDecoder().decode(LockOwner.self, from: $0) }
        return (owner, "\(st.st_ino)-\(POSIX.mtimeNanoseconds(st))")
    }
}

extension ArtifactStore {
    /// Where the lock of action `key` lives.
    public func actionLockPath(_ key: String) -> String {
        root.path + "/locks/" + key.prefix(2) + "/" + key + ".lock"
    }

    /// Takes the per-action lock of `key` (waiting while another process or host runs it).
    public func lockAction(_ key: String, what: String, staleAfter: TimeInterval = ActionLock.defaultStaleAfter,
                           onWait: @Sendable (LockOwner) -> Void = { _ in }) async throws -> ActionLock {
        precondition(Self.isValidKey(key), "internal: invalid action key '\(key)'")
        return try await ActionLock.acquire(path: actionLockPath(key), what: what, staleAfter: staleAfter, onWait: onWait,
                                            onBreak: { [self] holder, reason in
            warn(StoreWarning(path: actionLockPath(key), message: "broke the lock of \(holder): \(reason)"))
        })
    }
}
