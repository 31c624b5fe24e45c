// ArtifactStore: a content-addressed store of immutable objects (objects/sha256/ab/cdef…), an action cache
// (actions/ab/<key>.json, see ArtifactStore+Actions.swift) and the run ledger (ledger.sqlite), safe to share
// between threads and processes. Objects appear only by atomic rename of a fsynced temp file from tmp/.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A content-addressed artifact store rooted at a directory (by default `.hprune/` beside the recipe).
///
/// Layout: `objects/sha256/ab/cdef…` (immutable, read-only files named by their SHA-256), `actions/ab/<key>.json`
/// (action key → output digests), `tmp/` (writes in progress, and `stage-<id>` scratch folders of running stages,
/// each with a `stage-<id>.lock`), `locks/` (one lock per action being computed), `ledger.sqlite` (runs, stages,
/// metrics), `lock` (held shared by every open store; `gc` needs it exclusively).
///
///     let store = try ArtifactStore(root: URL(fileURLWithPath: ".hprune"))
///     let d = try store.put(Data("hello".utf8))
///     let bytes = try store.data(d)          // verified against d
public final class ArtifactStore: Sendable {
    /// The store's directory.
    public let root: URL
    /// The run ledger (`root/ledger.sqlite`).
    public let ledger: Ledger
    /// False for the processes a driver starts (Slurm jobs, data-parallel ranks): they read the ledger but never
    /// write it (no source-digest memos, no abandoned-run marks), so on a shared filesystem only the driver's host
    /// writes the SQLite file.
    public let writesLedger: Bool

    let objectsPath: String
    let actionsPath: String
    let tmpPath: String
    let lockPath: String
    private let lockFD: Int32
    private let warningHandler: @Sendable (StoreWarning) -> Void
    let counters = Counters()

    /// Temp files older than this are leftovers of a crashed writer and are removed on open and by `gc`.
    static let staleTempAge: TimeInterval = 60

    /// Opens (creating if needed) the store at `root`.
    ///
    /// - Parameter onWarning: receives what the store repaired by itself (evicted corrupt objects or broken action
    ///   records). By default each is printed to standard error as `path: warning: …`.
    /// - Parameter writesLedger: false for a driver's jobs and ranks (`writesLedger`).
    public init(root: URL, onWarning: (@Sendable (StoreWarning) -> Void)? = nil, writesLedger: Bool = true) throws {
        let rootPath = root.standardizedFileURL.path
        self.writesLedger = writesLedger
        self.root = URL(fileURLWithPath: rootPath, isDirectory: true)
        objectsPath = rootPath + "/objects/sha256"
        actionsPath = rootPath + "/actions"
        tmpPath = rootPath + "/tmp"
        lockPath = rootPath + "/lock"
        warningHandler = onWarning ?? { warning in
            FileHandle.standardError.write(Data((warning.description + "\n").utf8))
        }
        for dir in [rootPath, objectsPath, actionsPath, tmpPath] { try POSIX.mkdirs(dir) }

        // Every open store holds `lock` shared for its lifetime; gc takes it exclusively, so gc never deletes
        // what a running process is about to record.
        let fd = try POSIX.open(lockPath, O_RDWR | O_CREAT, mode: 0o644)
        do {
            _ = try POSIX.flock(fd, LOCK_SH, path: lockPath)
            // Opening (WAL set-up, schema migration) is serialized between processes by a short exclusive lock.
            let initLockPath = rootPath + "/init.lock"
            let initFD = try POSIX.open(initLockPath, O_RDWR | O_CREAT, mode: 0o644)
            defer { POSIX.close(initFD) }
            _ = try POSIX.flock(initFD, LOCK_EX, path: initLockPath)
            ledger = try Ledger(path: rootPath + "/ledger.sqlite")
            if writesLedger { try ledger.markAbandonedRuns() }
        } catch {
            POSIX.close(fd)
            throw error
        }
        lockFD = fd
        removeStaleTempFiles(olderThan: Self.staleTempAge)
    }

    deinit {
        POSIX.close(lockFD)
    }

    // MARK: Objects

    /// Where the object `digest` lives (whether or not it is present).
    public func path(of digest: Digest) -> URL {
        URL(fileURLWithPath: objectPath(digest))
    }

    func objectPath(_ digest: Digest) -> String {
        let hex = digest.hex
        return objectsPath + "/" + hex.prefix(2) + "/" + hex.dropFirst(2)
    }

    /// Whether the object is present (not whether it is intact: `data(_:)` and `verify(_:)` check that).
    public func contains(_ digest: Digest) -> Bool {
        POSIX.stat(objectPath(digest)).map(POSIX.isRegular) ?? false
    }

    /// The size in bytes of a present object, or nil.
    public func size(of digest: Digest) -> Int64? {
        guard let st = POSIX.stat(objectPath(digest)), POSIX.isRegular(st) else { return nil }
        return Int64(st.st_size)
    }

    /// Stores `data` and returns its digest. Idempotent: storing the same bytes again writes nothing.
    @discardableResult
    public func put(_ data: Data) throws -> Digest {
        let digest = Digest.of(data)
        let dest = objectPath(digest)
        if size(of: digest) == Int64(data.count) { return digest }
        try POSIX.writeAtomically(data, to: dest, tmpDir: tmpPath, mode: 0o444)
        return digest
    }

    /// Stores the file at `url` by streaming it (4 MiB at a time) through SHA-256 into a temp file, then renaming.
    /// Memory use does not depend on the file's size.
    @discardableResult
    public func putFile(at url: URL) throws -> Digest {
        try putFileReturningSize(url.path).digest
    }

    func putFileReturningSize(_ source: String) throws -> (digest: Digest, size: Int64) {
        let input = try POSIX.open(source, O_RDONLY)
        defer { POSIX.close(input) }
        let st = try POSIX.fstat(input, path: source)
        guard POSIX.isRegular(st) else {
            throw StoreError.unsupportedFile(path: source, reason: "not a regular file")
        }
        let tmp = tmpPath + "/" + POSIX.uniqueTempName()
        let output = try POSIX.open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        do {
            let (digest, size) = try hashFile(descriptor: input, path: source, copyTo: output, outPath: tmp)
            let dest = objectPath(digest)
            if self.size(of: digest) == size {
                POSIX.close(output)
                try POSIX.unlink(tmp)
                return (digest, size)
            }
            try POSIX.fsync(output, path: tmp)
            try POSIX.fchmod(output, 0o444, path: tmp)
            POSIX.close(output)
            try POSIX.moveIntoPlace(tmp, dest)
            return (digest, size)
        } catch {
            POSIX.close(output)
            try? POSIX.unlink(tmp)
            throw error
        }
    }

    /// Reads an object and checks it against its digest.
    ///
    /// - Throws: `StoreError.missing` if absent; `StoreError.corrupt` if the bytes do not match (the object is
    ///   then removed from the store, so the stage that made it re-runs).
    public func data(_ digest: Digest) throws -> Data {
        let path = objectPath(digest)
        guard let fd = try POSIX.openIfExists(path) else { throw StoreError.missing(digest, path: path) }
        defer { POSIX.close(fd) }
        let st = try POSIX.fstat(fd, path: path)
        let data = try POSIX.readAll(fd, path: path, sizeHint: Int(st.st_size))
        if Digest.of(data) != digest {
            evictObject(digest, reason: "its bytes do not match its digest")
            throw StoreError.corrupt(digest, path: path)
        }
        return data
    }

    /// Re-hashes an object without loading it into memory (for large tensors read through `path(of:)`).
    ///
    /// - Throws: `StoreError.missing` or `StoreError.corrupt` (the corrupt object is removed).
    public func verify(_ digest: Digest) throws {
        let path = objectPath(digest)
        guard let fd = try POSIX.openIfExists(path) else { throw StoreError.missing(digest, path: path) }
        defer { POSIX.close(fd) }
        let (actual, _) = try hashFile(descriptor: fd, path: path)
        if actual != digest {
            evictObject(digest, reason: "its bytes do not match its digest")
            throw StoreError.corrupt(digest, path: path)
        }
    }

    /// Removes a damaged object and says so.
    /// Deletes an object its writer no longer needs (e.g. a superseded training checkpoint). Only for objects the
    /// caller made for itself: content addressing means another record could share identical bytes, so callers
    /// pass only digests of content unique to them (a checkpoint carries its own step and action key).
    public func discard(_ digest: Digest) {
        try? POSIX.unlink(objectPath(digest))
    }

    func evictObject(_ digest: Digest, reason: String) {
        let path = objectPath(digest)
        try? POSIX.unlink(path)
        warn(StoreWarning(path: path, message: "object \(digest.short) removed: \(reason); the stage that made it will re-run"))
    }

    func warn(_ warning: StoreWarning) {
        warningHandler(warning)
    }

    /// Removes files in tmp/ not modified for `age` seconds: leftovers of writers that crashed or were killed.
    @discardableResult
    func removeStaleTempFiles(olderThan age: TimeInterval) -> (count: Int, bytes: Int64) {
        let names = (try? POSIX.listDirectory(tmpPath)) ?? []
        let now = Date().timeIntervalSince1970
        var removed = (count: 0, bytes: Int64(0))
        for name in names {
            // Stage scratch folders and their locks are judged by their locks, not their age (staleStageDirectories).
            if name.hasPrefix("stage-") { continue }
            let path = tmpPath + "/" + name
            guard let st = POSIX.lstat(path), !POSIX.isDirectory(st) else { continue }
            let modified = Double(POSIX.mtimeNanoseconds(st)) / 1e9
            if now - modified >= age, (try? POSIX.unlink(path)) != nil {
                removed.count += 1
                removed.bytes += Int64(st.st_size)
            }
        }
        return removed
    }

    /// Takes the store for this process alone (gc), runs `body`, and shares it again.
    func withExclusiveLock<T>(_ body: () throws -> T) throws -> T {
        guard try POSIX.flock(lockFD, LOCK_EX | LOCK_NB, path: lockPath) else {
            // flock converts by unlocking first, so a failed upgrade may have dropped the shared lock: take it back.
            _ = try? POSIX.flock(lockFD, LOCK_SH, path: lockPath)
            throw StoreError.busy(path: root.path)
        }
        defer { _ = try? POSIX.flock(lockFD, LOCK_SH, path: lockPath) }
        return try body()
    }
}

/// Counts of work done by one store instance (for `hprune` summaries and for tests that prove caching).
final class Counters: @unchecked Sendable {
    private let lock = NSLock()
    private var _sourceFilesHashed = 0
    private var _sourceBytesHashed: Int64 = 0

    func addSourceHash(bytes: Int64) {
        lock.lock(); defer { lock.unlock() }
        _sourceFilesHashed += 1
        _sourceBytesHashed += bytes
    }

    var sourceFilesHashed: Int { lock.lock(); defer { lock.unlock() }; return _sourceFilesHashed }
    var sourceBytesHashed: Int64 { lock.lock(); defer { lock.unlock() }; return _sourceBytesHashed }
}
