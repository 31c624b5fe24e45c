// Source hashing: files named in recipes (models, datasets) are hashed once and remembered in the ledger by
// (path, size, mtime ns, inode), so re-runs do not re-read gigabytes (by the driver only: a store opened with
// `writesLedger: false`, a job's, reads the memos and adds none). Hashing never copies into the store.
import Foundation

extension ArtifactStore {
    /// The digest of a source file, or of a directory as a tree (the same digest `putTree` would give it),
    /// without copying anything into the store. Symbolic links are followed wherever they lead (model caches
    /// link into blob folders).
    ///
    /// Each file's digest is remembered by (real path, size, mtime in ns, inode); a file unchanged in all four is
    /// not read again. A file modified in the last 2 seconds is hashed but not remembered, since a write in the
    /// same clock tick could change it without changing its mtime.
    public func hashSource(at url: URL) throws -> Digest {
        let path = url.standardizedFileURL.path
        guard let real = POSIX.realpath(path), let st = POSIX.stat(real) else {
            throw StoreError.io(path: path, operation: "open source", code: ENOENT)
        }
        if POSIX.isRegular(st) { return try hashSourceFile(real, status: st) }
        guard POSIX.isDirectory(st) else {
            throw StoreError.unsupportedFile(path: path, reason: "a fifo, socket or device")
        }
        var entries: [Tree.Entry] = []
        for file in try walkFiles(under: real, allowOutsideLinks: true) {
            let digest = try hashSourceFile(file.readPath, status: file.status)
            entries.append(Tree.Entry(path: file.relativePath, digest: digest, size: Int64(file.status.st_size),
                                      executable: file.executable))
        }
        return Tree(entries: entries).digest
    }

    /// How many source files this store instance has actually read and hashed (cache misses).
    public var sourceFilesHashed: Int { counters.sourceFilesHashed }

    /// How many bytes of source files this store instance has hashed.
    public var sourceBytesHashed: Int64 { counters.sourceBytesHashed }

    /// The digest of one regular file at its real path, from the ledger's memory when unchanged.
    func hashSourceFile(_ path: String, status st: FileStat) throws -> Digest {
        let key = SourceKey(path: path, size: Int64(st.st_size), mtimeNs: POSIX.mtimeNanoseconds(st),
                            inode: Int64(bitPattern: UInt64(st.st_ino)))
        // A job (not writing the ledger) treats an unreadable ledger as a miss: it hashes the file instead.
        if let digest = writesLedger ? try ledger.sourceDigest(for: key) : (try? ledger.sourceDigest(for: key)) ?? nil {
            return digest
        }

        let started = Date().timeIntervalSince1970
        let fd = try POSIX.open(path, O_RDONLY)
        defer { POSIX.close(fd) }
        let before = try POSIX.fstat(fd, path: path)
        let (digest, bytes) = try hashFile(descriptor: fd, path: path)
        counters.addSourceHash(bytes: bytes)
        let after = try POSIX.fstat(fd, path: path)
        let unchanged = bytes == Int64(after.st_size) && POSIX.mtimeNanoseconds(before) == POSIX.mtimeNanoseconds(after)
            && before.st_size == after.st_size
        let mtime = Double(POSIX.mtimeNanoseconds(after)) / 1e9
        let settled = mtime < started - 2
        if writesLedger && unchanged && settled && Int64(after.st_size) == key.size && POSIX.mtimeNanoseconds(after) == key.mtimeNs {
            try ledger.rememberSource(key, digest: digest)
        }
        return digest
    }
}

/// What identifies an unchanged source file.
struct SourceKey: Sendable, Equatable {
    var path: String
    var size: Int64
    var mtimeNs: Int64
    var inode: Int64
}
