// Thin wrappers over the system calls the store needs (open, read, write, fsync, rename, link, stat, flock),
// turning errno into StoreError.io with the path. Durable writes live here: temp file → fsync → rename → fsync dir.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The C `struct stat`, named so it does not clash with the wrappers' `stat(_:)`.
typealias FileStat = stat

enum POSIX {
    /// Opens `path`; throws StoreError.io on failure (ENOENT included: callers that expect it check first).
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        while true {
            let fd = systemOpen(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw StoreError.io(path: path, operation: "open", code: errno)
        }
    }

    /// Opens `path` for reading, or returns nil if it does not exist.
    static func openIfExists(_ path: String) throws -> Int32? {
        do { return try open(path, O_RDONLY) } catch StoreError.io(_, _, let code) where code == ENOENT || code == ENOTDIR {
            return nil
        }
    }

    static func close(_ fd: Int32) {
        _ = systemClose(fd)
    }

    /// Reads up to `buffer.count` bytes; 0 means end of file.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
        while true {
            let n = systemRead(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw StoreError.io(path: path, operation: "read", code: errno)
        }
    }

    /// Reads the whole file behind `fd`.
    static func readAll(_ fd: Int32, path: String, sizeHint: Int = 0) throws -> Data {
        var data = Data(capacity: max(sizeHint, 0))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(max(sizeHint, 4096), streamChunkSize) + 1,
                                                             alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = try read(fd, into: buffer, path: path)
            if n == 0 { return data }
            data.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = systemWrite(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(path: path, operation: "write", code: errno)
            }
            offset += n
        }
    }

    static func fsync(_ fd: Int32, path: String) throws {
        if systemFsync(fd) != 0 && errno != EINVAL {
            throw StoreError.io(path: path, operation: "fsync", code: errno)
        }
    }

    /// fsyncs a directory so a rename inside it survives a power cut.
    static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    static func rename(_ from: String, _ to: String) throws {
        if systemRename(from, to) != 0 {
            throw StoreError.io(path: to, operation: "rename \(from) into place", code: errno)
        }
    }

    /// Removes a file; a file already gone is not an error.
    static func unlink(_ path: String) throws {
        if systemUnlink(path) != 0 && errno != ENOENT {
            throw StoreError.io(path: path, operation: "remove", code: errno)
        }
    }

    /// Creates a directory; returns false if it already existed.
    @discardableResult
    static func mkdir(_ path: String, mode: mode_t = 0o755) throws -> Bool {
        if systemMkdir(path, mode) == 0 { return true }
        if errno == EEXIST { return false }
        throw StoreError.io(path: path, operation: "create directory", code: errno)
    }

    /// Creates a directory and its missing parents.
    static func mkdirs(_ path: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try mkdirs(parent) }
        try mkdir(path)
    }

    static func stat(_ path: String) -> FileStat? {
        var st = FileStat()
        return systemStat(path, &st) == 0 ? st : nil
    }

    static func lstat(_ path: String) -> FileStat? {
        var st = FileStat()
        return systemLstat(path, &st) == 0 ? st : nil
    }

    static func fstat(_ fd: Int32, path: String) throws -> FileStat {
        var st = FileStat()
        if systemFstat(fd, &st) != 0 { throw StoreError.io(path: path, operation: "stat", code: errno) }
        return st
    }

    static func link(_ from: String, _ to: String) -> Int32 {
        systemLink(from, to) == 0 ? 0 : errno
    }

    static func fchmod(_ fd: Int32, _ mode: mode_t, path: String) throws {
        if systemFchmod(fd, mode) != 0 { throw StoreError.io(path: path, operation: "chmod", code: errno) }
    }

    /// The names in a directory (without `.` and `..`), unsorted.
    static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = systemOpendir(path) else {
            throw StoreError.io(path: path, operation: "list directory", code: errno)
        }
        defer { _ = systemClosedir(dir) }
        var names: [String] = []
        while let entry = systemReaddir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Takes an advisory lock on `fd` (LOCK_SH / LOCK_EX, optionally | LOCK_NB). Returns false if LOCK_NB and held.
    static func flock(_ fd: Int32, _ operation: Int32, path: String) throws -> Bool {
        while true {
            if systemFlock(fd, operation) == 0 { return true }
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { return false }
            throw StoreError.io(path: path, operation: "lock", code: errno)
        }
    }

    /// The canonical absolute path (symbolic links resolved), or nil if it does not exist.
    static func realpath(_ path: String) -> String? {
        guard let resolved = systemRealpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Writes `data` durably and atomically at `destination`: temp file in `tmpDir` → fsync → chmod → rename → fsync dir.
    /// Readers see either no file or the complete file, never a partial one.
    static func writeAtomically(_ data: Data, to destination: String, tmpDir: String, mode: mode_t) throws {
        let tmp = tmpDir + "/" + uniqueTempName()
        let fd = try open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        do {
            try data.withUnsafeBytes { try writeAll(fd, $0, path: tmp) }
            try fsync(fd, path: tmp)
            try fchmod(fd, mode, path: tmp)
            close(fd)
            try moveIntoPlace(tmp, destination)
        } catch {
            close(fd)
            try? unlink(tmp)
            throw error
        }
    }

    /// Renames a finished temp file to `destination`, creating the parent directory, and fsyncs the directory.
    static func moveIntoPlace(_ tmp: String, _ destination: String) throws {
        let dir = (destination as NSString).deletingLastPathComponent
        if try mkdir(dir) {
            try fsyncDirectory((dir as NSString).deletingLastPathComponent)
        }
        try rename(tmp, destination)
        try fsyncDirectory(dir)
    }

    /// A name no other writer (thread or process) will pick: pid, time, random.
    static func uniqueTempName() -> String {
        "\(getpid())-\(UInt64(Date().timeIntervalSince1970 * 1000))-\(UInt64.random(in: 0...UInt64.max)).tmp"
    }

    /// Nanoseconds since the epoch of the file's last modification.
    static func mtimeNanoseconds(_ st: FileStat) -> Int64 {
        #if canImport(Darwin)
        Int64(st.st_mtimespec.tv_sec) * 1_000_000_000 + Int64(st.st_mtimespec.tv_nsec)
        #else
        Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        #endif
    }

    static func isRegular(_ st: FileStat) -> Bool { (st.st_mode & S_IFMT) == S_IFREG }
    static func isDirectory(_ st: FileStat) -> Bool { (st.st_mode & S_IFMT) == S_IFDIR }
    static func isSymlink(_ st: FileStat) -> Bool { (st.st_mode & S_IFMT) == S_IFLNK }
}

// The system calls under their own names, so the wrappers above can reuse the short ones.
private func systemOpen(_ p: String, _ f: Int32, _ m: mode_t) -> Int32 { open(p, f, m) }
private func systemFlock(_ fd: Int32, _ op: Int32) -> Int32 { flock(fd, op) }
private func systemOpendir(_ p: String) -> OpaquePointer? { opendir(p) }
private func systemClosedir(_ d: OpaquePointer) -> Int32 { closedir(d) }
private func systemReaddir(_ d: OpaquePointer) -> UnsafeMutablePointer<dirent>? { readdir(d) }
private func systemClose(_ fd: Int32) -> Int32 { close(fd) }
private func systemRead(_ fd: Int32, _ p: UnsafeMutableRawPointer?, _ n: Int) -> Int { read(fd, p, n) }
private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
private func systemFsync(_ fd: Int32) -> Int32 { fsync(fd) }
private func systemRename(_ a: String, _ b: String) -> Int32 { rename(a, b) }
private func systemUnlink(_ p: String) -> Int32 { unlink(p) }
private func systemMkdir(_ p: String, _ m: mode_t) -> Int32 { mkdir(p, m) }
private func systemStat(_ p: String, _ st: inout FileStat) -> Int32 { stat(p, &st) }
private func systemLstat(_ p: String, _ st: inout FileStat) -> Int32 { lstat(p, &st) }
private func systemFstat(_ fd: Int32, _ st: inout FileStat) -> Int32 { fstat(fd, &st) }
private func systemLink(_ a: String, _ b: String) -> Int32 { link(a, b) }
private func systemFchmod(_ fd: Int32, _ m: mode_t) -> Int32 { fchmod(fd, m) }
private func systemRealpath(_ p: String, _ r: UnsafeMutablePointer<CChar>?) -> UnsafeMutablePointer<CChar>? { realpath(p, r) }
