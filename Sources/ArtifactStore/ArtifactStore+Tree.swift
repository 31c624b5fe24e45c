// Tree objects: a directory stored as one canonical JSON object listing every regular file (path, digest, size,
// executable bit), each file stored as its own object. Also the directory walker shared with source hashing.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A stored directory: every regular file under it, sorted by path (UTF-8 byte order).
///
/// Its canonical JSON, whose SHA-256 is the tree's digest, is exactly
/// `{"entries":[{"digest":"…","executable":false,"path":"a/b.txt","size":12},…]}` (keys sorted, no spaces,
/// strings escaped only where JSON requires: `"`, `\` and control characters as `\u00xx`).
/// Empty directories are not recorded (as in git).
public struct Tree: Codable, Sendable, Equatable {
    /// One regular file of a tree.
    public struct Entry: Codable, Sendable, Equatable {
        /// Relative path with `/` separators; never absolute, never `.` or `..` components.
        public var path: String
        public var digest: Digest
        public var size: Int64
        /// Whether the owner-execute bit was set.
        public var executable: Bool

        public init(path: String, digest: Digest, size: Int64, executable: Bool) {
            self.path = path
            self.digest = digest
            self.size = size
            self.executable = executable
        }
    }

    /// The files, sorted by path.
    public var entries: [Entry]

    /// Makes a tree; entries are sorted by path.
    public init(entries: [Entry]) {
        self.entries = entries.sorted { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }
    }

    /// The canonical JSON bytes whose SHA-256 is the tree's digest.
    public func canonicalJSON() -> Data {
        var out = "{\"entries\":["
        for (index, entry) in entries.enumerated() {
            if index > 0 { out += "," }
            out += "{\"digest\":\"\(entry.digest.hex)\",\"executable\":\(entry.executable),"
            out += "\"path\":\(canonicalJSONString(entry.path)),\"size\":\(entry.size)}"
        }
        out += "]}"
        return Data(out.utf8)
    }

    /// The tree's digest (the digest of its canonical JSON).
    public var digest: Digest { Digest.of(canonicalJSON()) }

    /// Checks that every path is relative, clean and unique; returns the reason if not.
    func problem() -> String? {
        var previous: [UInt8]? = nil
        for entry in entries {
            let path = entry.path
            if path.isEmpty || path.hasPrefix("/") || path.utf8.contains(0) {
                return "entry path '\(path)' is empty, absolute or contains NUL"
            }
            if path.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
                return "entry path '\(path)' has an empty, '.' or '..' component"
            }
            let bytes = Array(path.utf8)
            if let previous, !previous.lexicographicallyPrecedes(bytes) {
                return "entries are not sorted by path or repeat '\(path)'"
            }
            if entry.size < 0 { return "entry '\(path)' has a negative size" }
            previous = bytes
        }
        return nil
    }
}

/// JSON string literal with the fixed escaping used by canonical JSON.
func canonicalJSONString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where scalar.value < 0x20:
            out += "\\u00" + String(scalar.value >> 4, radix: 16) + String(scalar.value & 0xf, radix: 16)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

extension ArtifactStore {
    /// Stores every regular file under `directory` (recursively) and a tree object listing them; returns the
    /// tree's digest. Symbolic links are followed if they stay inside `directory`; one that leads outside throws
    /// `StoreError.symlinkEscapes`. Fifos, sockets and devices throw `StoreError.unsupportedFile`.
    @discardableResult
    public func putTree(_ directory: URL) throws -> Digest {
        let files = try walkFiles(under: directory.path, allowOutsideLinks: false)
        var entries: [Tree.Entry] = []
        entries.reserveCapacity(files.count)
        for file in files {
            let (digest, size) = try putFileReturningSize(file.readPath)
            entries.append(Tree.Entry(path: file.relativePath, digest: digest, size: size, executable: file.executable))
        }
        return try put(Tree(entries: entries).canonicalJSON())
    }

    /// Reads and checks a tree object.
    ///
    /// - Throws: `StoreError.missing` / `.corrupt` for the object, `.invalidTree` if it is not a valid tree.
    public func readTree(_ digest: Digest) throws -> Tree {
        let data = try self.data(digest)
        let tree: Tree
        do {
            tree = try JSONDecoder().decode(Tree.self, from: data)
        } catch {
            throw StoreError.invalidTree(digest, reason: "not a tree object (\(error))")
        }
        if let problem = tree.problem() { throw StoreError.invalidTree(digest, reason: problem) }
        return tree
    }

    /// Recreates a stored tree in `directory` (created; if it exists it must be an empty directory).
    ///
    /// Files are hard links to the store's read-only objects (no copying) unless `copy` is true, the file is
    /// executable, or linking is impossible (another file system); copies are made read-only too.
    /// Each object's size is checked (cheap); its hash is not (`verify(_:)` does that).
    public func materializeTree(_ digest: Digest, into directory: URL, copy: Bool = false) throws {
        let tree = try readTree(digest)
        let dest = directory.standardizedFileURL.path
        if let st = POSIX.stat(dest) {
            let contents = (try? POSIX.listDirectory(dest)) ?? ["?"]
            guard POSIX.isDirectory(st), contents.isEmpty else { throw StoreError.destinationNotEmpty(path: dest) }
        } else {
            try POSIX.mkdirs(dest)
        }
        var madeDirectories: Set<String> = [dest]
        for entry in tree.entries {
            let target = dest + "/" + entry.path
            let parent = (target as NSString).deletingLastPathComponent
            if !madeDirectories.contains(parent) {
                try POSIX.mkdirs(parent)
                madeDirectories.insert(parent)
            }
            let source = objectPath(entry.digest)
            guard let size = size(of: entry.digest) else { throw StoreError.missing(entry.digest, path: source) }
            if size != entry.size {
                evictObject(entry.digest, reason: "its size is \(size) bytes, the tree \(digest.short) says \(entry.size)")
                throw StoreError.corrupt(entry.digest, path: source)
            }
            if !copy && !entry.executable {
                let code = POSIX.link(source, target)
                if code == 0 { continue }
                if code != EXDEV && code != EMLINK && code != EPERM && code != EACCES {
                    throw StoreError.io(path: target, operation: "link \(source)", code: code)
                }
            }
            try copyFile(source, to: target, mode: entry.executable ? 0o555 : 0o444)
        }
    }

    /// Streams `source` into a new file `target` (which must not exist) and sets its mode.
    func copyFile(_ source: String, to target: String, mode: mode_t) throws {
        let input = try POSIX.open(source, O_RDONLY)
        defer { POSIX.close(input) }
        let output = try POSIX.open(target, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        defer { POSIX.close(output) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: streamChunkSize, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let n = try POSIX.read(input, into: buffer, path: source)
            if n == 0 { break }
            try POSIX.writeAll(output, UnsafeRawBufferPointer(rebasing: buffer[0..<n]), path: target)
        }
        try POSIX.fchmod(output, mode, path: target)
    }

    /// One regular file found by `walkFiles`.
    struct WalkedFile {
        /// Path relative to the walked directory, `/`-separated (the link's path for files reached by a link).
        var relativePath: String
        /// The path to read: the file itself, or the link's resolved target.
        var readPath: String
        var status: FileStat
        var executable: Bool { status.st_mode & 0o100 != 0 }
    }

    /// Every regular file under `directory`, sorted by relative path (UTF-8 byte order), following symbolic links.
    /// With `allowOutsideLinks` false, a link resolving outside `directory` throws `StoreError.symlinkEscapes`.
    func walkFiles(under directory: String, allowOutsideLinks: Bool) throws -> [WalkedFile] {
        guard let rootReal = POSIX.realpath(directory), let rootStat = POSIX.stat(rootReal) else {
            throw StoreError.io(path: directory, operation: "open directory", code: ENOENT)
        }
        guard POSIX.isDirectory(rootStat) else {
            throw StoreError.unsupportedFile(path: directory, reason: "not a directory")
        }
        struct DirID: Hashable { var device: UInt64; var inode: UInt64 }
        var files: [WalkedFile] = []

        func visit(_ dirPath: String, _ relative: String, _ ancestors: Set<DirID>) throws {
            for name in try POSIX.listDirectory(dirPath) {
                let path = dirPath + "/" + name
                let rel = relative.isEmpty ? name : relative + "/" + name
                guard let linkStat = POSIX.lstat(path) else { continue }  // vanished while walking
                var status = linkStat
                var readPath = path
                if POSIX.isSymlink(linkStat) {
                    guard let target = POSIX.realpath(path), let targetStat = POSIX.stat(target) else {
                        throw StoreError.unsupportedFile(path: path, reason: "dangling symbolic link")
                    }
                    if !allowOutsideLinks && target != rootReal && !target.hasPrefix(rootReal == "/" ? "/" : rootReal + "/") {
                        throw StoreError.symlinkEscapes(link: path, target: target, root: directory)
                    }
                    status = targetStat
                    readPath = target
                }
                if POSIX.isRegular(status) {
                    files.append(WalkedFile(relativePath: rel, readPath: readPath, status: status))
                } else if POSIX.isDirectory(status) {
                    let id = DirID(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
                    if ancestors.contains(id) { throw StoreError.symlinkLoop(path: path) }
                    try visit(readPath, rel, ancestors.union([id]))
                } else {
                    throw StoreError.unsupportedFile(path: path, reason: "a fifo, socket or device")
                }
            }
        }
        try visit(rootReal, "", [DirID(device: UInt64(rootStat.st_dev), inode: UInt64(rootStat.st_ino))])
        return files.sorted { Array($0.relativePath.utf8).lexicographicallyPrecedes(Array($1.relativePath.utf8)) }
    }
}
