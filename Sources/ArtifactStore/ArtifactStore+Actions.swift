// The action cache: action key → the digests a stage produced (actions/ab/<key>.json, written atomically).
// A lookup checks that every object the record needs is still present with its size; a broken record is
// evicted with a warning and reported as a miss, so the stage simply re-runs. A record keeps the canonical JSON its
// key hashes (absent in records of older versions, which stay readable).
import Foundation

/// What one execution of a stage produced, stored under its action key.
public struct ActionRecord: Codable, Sendable, Equatable {
    /// The action key (SHA-256 hex of the stage's canonical action description).
    public var key: String
    /// The stage name that produced it (informational: another stage with the same key reuses it).
    public var stage: String
    /// The stage kind.
    public var kind: String
    /// Output port → artifact digest.
    public var outputs: [String: Digest]
    public var createdAt: Date
    /// How long the stage ran.
    public var seconds: Double
    /// Free-form details (kind version, backend, …).
    public var extra: [String: String]
    /// Every object the outputs need, hex digest → size in bytes: the outputs themselves, the files of tree
    /// outputs, and objects named by digest in JSON outputs (a model manifest's tensors). Filled in by
    /// `recordAction`; checked by `action(for:)`; what `gc` keeps.
    public var objectSizes: [String: Int64]
    /// The canonical JSON the key is the SHA-256 of (kind, kind version, params with inputs as digests, backend and
    /// numerics, seed, hprune version, file digests), so `diff` and `plan --why` can say which input changed. Nil in
    /// records written before it was kept (they stay readable) and in records whose key hashes nothing.
    public var canonical: String?

    public init(key: String, stage: String, kind: String, outputs: [String: Digest], createdAt: Date = Date(),
                seconds: Double, extra: [String: String] = [:], objectSizes: [String: Int64] = [:],
                canonical: String? = nil) {
        self.key = key
        self.stage = stage
        self.kind = kind
        self.outputs = outputs
        self.createdAt = createdAt
        self.seconds = seconds
        self.extra = extra
        self.objectSizes = objectSizes
        self.canonical = canonical
    }

    private enum CodingKeys: String, CodingKey {
        case key, stage, kind, outputs, createdAt, seconds, extra, objectSizes, canonical
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        key = try c.decode(String.self, forKey: .key)
        stage = try c.decode(String.self, forKey: .stage)
        kind = try c.decode(String.self, forKey: .kind)
        outputs = try c.decode([String: Digest].self, forKey: .outputs)
        createdAt = try c.decode(Date.self, forKey: .createdAt)
        seconds = try c.decode(Double.self, forKey: .seconds)
        extra = try c.decodeIfPresent([String: String].self, forKey: .extra) ?? [:]
        objectSizes = try c.decodeIfPresent([String: Int64].self, forKey: .objectSizes) ?? [:]
        canonical = try c.decodeIfPresent(String.self, forKey: .canonical)
    }
}

/// JSON coding of action records: sorted keys, dates as seconds since 1970 (exact, and fast to parse:
/// ISO 8601 through Foundation's formatter costs ~0.5 ms per record, too slow for planning 1,000 stages).
enum RecordJSON {
    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .secondsSince1970
        return encoder
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        return decoder
    }
}

extension ArtifactStore {
    /// Whether `key` can name an action record file: 2–128 of [A-Za-z0-9._-], not starting with '.'.
    static func isValidKey(_ key: String) -> Bool {
        let bytes = key.utf8
        guard (2...128).contains(bytes.count), bytes.first != UInt8(ascii: ".") else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
        }
    }

    func actionPath(_ key: String) -> String {
        actionsPath + "/" + key.prefix(2) + "/" + key + ".json"
    }

    /// The record for `key` if it is intact and every object it needs is present with the right size.
    ///
    /// A record that cannot be decoded, names another key, or needs a missing or wrong-sized object is removed
    /// (with a warning; a wrong-sized object is removed too) and nil is returned, so the stage re-runs.
    public func action(for key: String) -> ActionRecord? {
        guard Self.isValidKey(key) else {
            warn(StoreWarning(path: actionsPath, message: "action key '\(key.prefix(80))' is not a valid key; treated as not cached"))
            return nil
        }
        let path = actionPath(key)
        let data: Data
        let inode: UInt64
        do {
            guard let fd = try POSIX.openIfExists(path) else { return nil }
            defer { POSIX.close(fd) }
            inode = UInt64(try POSIX.fstat(fd, path: path).st_ino)
            data = try POSIX.readAll(fd, path: path)
        } catch {
            warn(StoreWarning(path: path, message: "cannot read action record (\(error)); treated as not cached"))
            return nil
        }
        switch checkRecord(data, key: key) {
        case .success(let record):
            return record
        case .failure(let problem):
            evictRecord(path, inode: inode, reason: problem.reason)
            for (digest, reason) in problem.corruptObjects { evictObject(digest, reason: reason) }
            return nil
        }
    }

    /// Stores `record` under its key (atomically; the last writer wins, which is harmless since equal keys mean
    /// equal work). Fills in `objectSizes` by following tree outputs and digests named in JSON outputs.
    ///
    /// - Throws: `StoreError.invalidKey`, or `StoreError.missing` if an output object is not in the store.
    /// - Returns: the record as stored (with `objectSizes`).
    @discardableResult
    public func recordAction(_ record: ActionRecord) throws -> ActionRecord {
        guard Self.isValidKey(record.key) else { throw StoreError.invalidKey(record.key) }
        var record = record
        record.objectSizes = try closure(of: Array(record.outputs.values))
        let data = try RecordJSON.encoder().encode(record)
        try POSIX.writeAtomically(data, to: actionPath(record.key), tmpDir: tmpPath, mode: 0o444)
        return record
    }

    /// Keys of every action record present, sorted.
    public func actionKeys() -> [String] {
        var keys: [String] = []
        for shard in (try? POSIX.listDirectory(actionsPath)) ?? [] {
            for name in (try? POSIX.listDirectory(actionsPath + "/" + shard)) ?? []
            where name.hasSuffix(".json") {
                keys.append(String(name.dropLast(5)))
            }
        }
        return keys.sorted()
    }

    struct RecordProblem: Error {
        var reason: String
        var corruptObjects: [(Digest, String)] = []
    }

    /// Decodes a record and checks it against the objects on disk (existence and size, no hashing).
    func checkRecord(_ data: Data, key: String) -> Result<ActionRecord, RecordProblem> {
        let record: ActionRecord
        do {
            record = try RecordJSON.decoder().decode(ActionRecord.self, from: data)
        } catch {
            return .failure(RecordProblem(reason: "action record is unreadable (\(error))"))
        }
        if record.key != key {
            return .failure(RecordProblem(reason: "action record is for key '\(record.key.prefix(80))', not '\(key)'"))
        }
        if let canonical = record.canonical, Digest.of(Data(canonical.utf8)).hex != key {
            return .failure(RecordProblem(reason: "action record's canonical JSON does not hash to its key '\(key)'"))
        }
        var needed = record.objectSizes
        for digest in record.outputs.values where needed[digest.hex] == nil { needed[digest.hex] = -1 }
        for (hex, expected) in needed.sorted(by: { $0.key < $1.key }) {
            guard let digest = Digest(hex: hex) else {
                return .failure(RecordProblem(reason: "action record names '\(hex.prefix(80))', which is not a digest"))
            }
            guard let actual = size(of: digest) else {
                return .failure(RecordProblem(reason: "its object \(digest.short) is missing"))
            }
            if expected >= 0 && actual != expected {
                return .failure(RecordProblem(
                    reason: "its object \(digest.short) is \(actual) bytes, expected \(expected)",
                    corruptObjects: [(digest, "its size is \(actual) bytes, expected \(expected)")]))
            }
        }
        return .success(record)
    }

    /// Removes a broken action record (only if it is still the file we read) and warns.
    func evictRecord(_ path: String, inode: UInt64?, reason: String) {
        if let inode, let st = POSIX.lstat(path), UInt64(st.st_ino) != inode { return }  // replaced meanwhile
        try? POSIX.unlink(path)
        warn(StoreWarning(path: path, message: "\(reason); removed the action record, the stage will re-run"))
    }

    /// Every object reachable from `roots` → size: the roots, the files of trees, and digests named in JSON
    /// objects (up to 64 MiB each) that are present in the store. Roots must be present.
    func closure(of roots: [Digest]) throws -> [String: Int64] {
        var sizes: [String: Int64] = [:]
        var queue: [Digest] = []
        for root in roots {
            guard let size = size(of: root) else { throw StoreError.missing(root, path: objectPath(root)) }
            if sizes.updateValue(size, forKey: root.hex) == nil { queue.append(root) }
        }
        while let digest = queue.popLast() {
            for child in try references(of: digest, size: sizes[digest.hex] ?? 0) where sizes[child.hex] == nil {
                guard let size = size(of: child) else { continue }
                sizes[child.hex] = size
                queue.append(child)
            }
        }
        return sizes
    }

    /// Digests named inside an object if it looks like JSON (first byte `{` or `[`, at most 64 MiB):
    /// every run of exactly 64 hex digits. Conservative: it may name things that are not objects.
    func references(of digest: Digest, size: Int64) throws -> [Digest] {
        guard size >= 2, size <= 64 << 20 else { return [] }
        let path = objectPath(digest)
        guard let fd = try POSIX.openIfExists(path) else { return [] }
        var first: UInt8 = 0
        let n = try withUnsafeMutableBytes(of: &first) { try POSIX.read(fd, into: $0, path: path) }
        POSIX.close(fd)
        guard n == 1, first == UInt8(ascii: "{") || first == UInt8(ascii: "[") else { return [] }
        return scanDigests(try data(digest))
    }
}

/// Every maximal run of exactly 64 hex digits in `data`, as digests (lowercase runs only, as the store writes).
func scanDigests(_ data: Data) -> [Digest] {
    var found: [Digest] = []
    data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
        let bytes = raw.bindMemory(to: UInt8.self)
        var runStart = 0
        var index = 0
        func isHex(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) }
        while index <= bytes.count {
            if index < bytes.count && isHex(bytes[index]) {
                index += 1
                continue
            }
            if index - runStart == 64,
               let digest = Digest(hex: String(decoding: UnsafeBufferPointer(rebasing: bytes[runStart..<index]), as: UTF8.self)) {
                found.append(digest)
            }
            index += 1
            runStart = index
        }
    }
    return found
}
