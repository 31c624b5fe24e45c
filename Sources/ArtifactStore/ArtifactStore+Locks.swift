// Stage scratch-folder locks: flock(2) locks that the kernel drops when the holder dies (kill -9 too), one per
// stage scratch folder (`tmp/stage-<id>.lock` beside `tmp/stage-<id>`), so `cache verify` and `cache gc` tell a
// running stage's folder (locked) from one a killed process left behind (lockable, so stale). (The lock that makes
// an action run once, across processes and hosts, is `ActionLock`, in ActionLock.swift.)
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A held lock file; `release()` (or deinit) unlocks it and removes the file.
///
/// The file is removed while still locked, so a waiter that opened it earlier finds, after locking, that it
/// holds a file no longer at the path, and tries again (see `ArtifactStore.tryLock`).
public final class StoreLock: @unchecked Sendable {
    public let path: String
    private let lock = NSLock()
    private var fd: Int32?

    init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    /// Unlocks and removes the lock file; later calls do nothing.
    public func release() { releaseInternal(unlinking: true) }

    func releaseInternal(unlinking: Bool) {
        lock.lock()
        defer { lock.unlock() }
        guard let fd else { return }
        if unlinking { try? POSIX.unlink(path) }
        POSIX.close(fd)
        self.fd = nil
    }

    deinit { release() }
}

/// A stage's scratch folder under `tmp/`, locked for as long as the stage runs.
public struct StageDirectory: Sendable {
    public let url: URL
    let lock: StoreLock

    /// Removes the folder, then its lock.
    public func remove() {
        try? FileManager.default.removeItem(at: url)
        lock.release()
    }
}

extension ArtifactStore {
    /// Takes the lock file at `path` (created if needed) without waiting; nil if another holder has it.
    func tryLock(path: String) throws -> StoreLock? {
        while true {
            let fd = try POSIX.open(path, O_RDWR | O_CREAT, mode: 0o644)
            guard try POSIX.flock(fd, LOCK_EX | LOCK_NB, path: path) else {
                POSIX.close(fd)
                return nil
            }
            // A holder may have removed the file between our open and our flock: only the file at `path` counts.
            if let st = POSIX.stat(path), let mine = try? POSIX.fstat(fd, path: path), st.st_ino == mine.st_ino {
                let pid = Data("\(getpid())\n".utf8)
                _ = ftruncate(fd, 0)
                try? pid.withUnsafeBytes { try POSIX.writeAll(fd, $0, path: path) }
                return StoreLock(path: path, fd: fd)
            }
            POSIX.close(fd)
        }
    }

    /// Creates and locks a fresh scratch folder `tmp/stage-<UUID>` for a running stage.
    public func makeStageDirectory() throws -> StageDirectory {
        let name = "stage-\(UUID().uuidString)"
        // The lock exists before the folder, so a folder without a held lock is never a live one.
        guard let lock = try tryLock(path: tmpPath + "/" + name + ".lock") else {
            throw StoreError.busy(path: tmpPath + "/" + name)
        }
        let url = URL(fileURLWithPath: tmpPath + "/" + name, isDirectory: true)
        do { try POSIX.mkdir(url.path, mode: 0o755) } catch {
            lock.release()
            throw error
        }
        return StageDirectory(url: url, lock: lock)
    }

    /// Scratch folders (and lone lock files) under tmp/ that no live process holds: left by a killed run.
    /// With `remove`, they are deleted (each while its lock is held, so no stage can start using it meanwhile).
    func staleStageDirectories(remove: Bool) -> [String] {
        let names = (try? POSIX.listDirectory(tmpPath)) ?? []
        var stale: [String] = []
        for name in names.sorted() where name.hasPrefix("stage-") {
            let path = tmpPath + "/" + name
            let isLock = name.hasSuffix(".lock")
            if isLock {
                // A lone lock (its folder gone): a stage killed while it started or finished.
                guard !names.contains(String(name.dropLast(5))) else { continue }
            } else {
                guard let st = POSIX.lstat(path), POSIX.isDirectory(st) else { continue }
            }
            let lockPath = isLock ? path : path + ".lock"
            guard let lock = try? tryLock(path: lockPath) else { continue }   // held: a live stage
            if isLock {
                if remove { lock.release() } else { lock.releaseKeepingFile() }
                continue
            }
            stale.append(path)
            if remove { try? FileManager.default.removeItem(atPath: path) }
            if remove { lock.release() } else { lock.releaseKeepingFile() }
        }
        return stale
    }
}

extension StoreLock {
    /// Unlocks without removing the file (a report-only check must leave things as they were).
    func releaseKeepingFile() {
        releaseInternal(unlinking: false)
    }
}
