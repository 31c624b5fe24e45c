// Partial results: what a stage keeps while it works so that an interrupted or sharded execution resumes —
// `score`'s per-component ΔP, training checkpoints. They are not actions (nothing looks them up by action key as a
// cached result), so they have their own namespace:
//
//     partials/<namespace>/<name>.json     → {digest, size, owner, stage, createdAt, extra}; the bytes are an object
//
// A namespace is a key-like name the stage picks (a training checkpoint uses its action key; `score` a digest of the
// settings its ΔP values depend on, so a change that does not alter them reuses them). Records are written
// atomically (temp → fsync → rename) and replaced in place; a read checks the object is present with its size, and
// `partialData` re-hashes it. `owner` is the action key of the execution that wrote the record: `gc` keeps a
// namespace while an owner of it is among the actions of the runs it keeps (whatever their status, so an interrupted
// run's partials survive), and `verify` checks every record. Stores written before partials existed simply have
// none (their old pseudo-action records `ckpt-…` / `score-…` are never looked up again, and `gc` removes them).
import Foundation

/// One partial result: where its bytes are and who wrote it.
public struct PartialRecord: Codable, Sendable, Equatable {
    public var namespace: String
    public var name: String
    /// The object holding the bytes.
    public var digest: Digest
    public var size: Int64
    /// Action key of the execution that wrote it ("" when it had none).
    public var owner: String
    /// The stage that wrote it (informational).
    public var stage: String
    public var createdAt: Date
    /// Free-form details (e.g. a checkpoint's step).
    public var extra: [String: String]

    public init(namespace: String, name: String, digest: Digest, size: Int64, owner: String, stage: String,
                createdAt: Date = Date(), extra: [String: String] = [:]) {
        self.namespace = namespace
        self.name = name
        self.digest = digest
        self.size = size
        self.owner = owner
        self.stage = stage
        self.createdAt = createdAt
        self.extra = extra
    }
}

extension ArtifactStore {
    var partialsPath: String { root.path + "/partials" }

    func partialPath(_ namespace: String, _ name: String) -> String { partialsPath + "/" + namespace + "/" + name + ".json" }

    /// A valid partial name for `what`: itself where it is one (`blocks.3.attn`, `reference`), else its SHA-256 hex.
    public static func partialName(_ what: String) -> String {
        isValidKey(what) ? what : Digest.of(Data(what.utf8)).hex
    }

    /// Keeps `data` as partial result `name` of `namespace` (replacing what was there), written by the execution
    /// with action key `owner` of stage `stage`, at `createdAt` (now).
    ///
    /// - Throws: `StoreError.invalidKey` if the namespace or name is not 2–128 of [A-Za-z0-9._-] (not starting with '.').
    @discardableResult
    public func putPartial(_ data: Data, namespace: String, name: String, owner: String, stage: String,
                           extra: [String: String] = [:], createdAt: Date = Date()) throws -> PartialRecord {
        guard Self.isValidKey(namespace) else { throw StoreError.invalidKey(namespace) }
        guard Self.isValidKey(name) else { throw StoreError.invalidKey(name) }
        let digest = try put(data)
        let record = PartialRecord(namespace: namespace, name: name, digest: digest, size: Int64(data.count),
                                   owner: owner, stage: stage, createdAt: createdAt, extra: extra)
        try POSIX.mkdirs(partialsPath + "/" + namespace)
        try POSIX.writeAtomically(try RecordJSON.encoder().encode(record), to: partialPath(namespace, name),
                                  tmpDir: tmpPath, mode: 0o444)
        return record
    }

    /// The record of partial result `name` of `namespace` if it is readable and its object is present with its
    /// size; a broken record is removed with a warning and nil returned (the work is simply done again).
    public func partial(namespace: String, name: String) -> PartialRecord? {
        guard Self.isValidKey(namespace), Self.isValidKey(name) else { return nil }
        let path = partialPath(namespace, name)
        let data: Data
        do {
            guard let fd = try POSIX.openIfExists(path) else { return nil }
            defer { POSIX.close(fd) }
            data = try POSIX.readAll(fd, path: path)
        } catch {
            warn(StoreWarning(path: path, message: "cannot read partial result (\(error)); treated as absent"))
            return nil
        }
        switch checkPartial(data, namespace: namespace, name: name) {
        case .success(let record): return record
        case .failure(let problem):
            try? POSIX.unlink(path)
            warn(StoreWarning(path: path, message: "\(problem.reason); removed the partial result, its work will be done again"))
            return nil
        }
    }

    /// The bytes of partial result `name` of `namespace`, verified against their digest; nil when absent or damaged.
    public func partialData(namespace: String, name: String) -> Data? {
        guard let record = partial(namespace: namespace, name: name) else { return nil }
        return try? data(record.digest)
    }

    /// Every namespace that holds partial results, sorted.
    public func partialNamespaces() -> [String] {
        ((try? POSIX.listDirectory(partialsPath)) ?? []).filter { Self.isValidKey($0) }.sorted()
    }

    /// The names of the partial results in `namespace`, sorted.
    public func partialNames(in namespace: String) -> [String] {
        guard Self.isValidKey(namespace) else { return [] }
        return ((try? POSIX.listDirectory(partialsPath + "/" + namespace)) ?? [])
            .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// Removes every partial result of `namespace` (their objects go at the next `gc` unless something else uses them).
    public func removePartials(namespace: String) {
        guard Self.isValidKey(namespace) else { return }
        try? FileManager.default.removeItem(atPath: partialsPath + "/" + namespace)
    }

    /// Decodes a partial record and checks it names itself and that its object is present with its size.
    func checkPartial(_ data: Data, namespace: String, name: String) -> Result<PartialRecord, RecordProblem> {
        let record: PartialRecord
        do {
            record = try RecordJSON.decoder().decode(PartialRecord.self, from: data)
        } catch {
            return .failure(RecordProblem(reason: "partial record is unreadable (\(error))"))
        }
        guard record.namespace == namespace, record.name == name else {
            return .failure(RecordProblem(reason: "partial record is for '\(record.namespace)/\(record.name)', not '\(namespace)/\(name)'"))
        }
        guard let actual = size(of: record.digest) else {
            return .failure(RecordProblem(reason: "its object \(record.digest.short) is missing"))
        }
        guard actual == record.size else {
            return .failure(RecordProblem(reason: "its object \(record.digest.short) is \(actual) bytes, expected \(record.size)",
                                          corruptObjects: [(record.digest, "its size is \(actual) bytes, expected \(record.size)")]))
        }
        return .success(record)
    }

    /// Every intact partial record (broken ones are skipped; `verify` reports and removes them).
    func allPartials() -> [PartialRecord] {
        partialNamespaces().flatMap { ns in partialNames(in: ns).compactMap { name -> PartialRecord? in
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: partialPath(ns, name))),
                  case .success(let r) = checkPartial(data, namespace: ns, name: name) else { return nil }
            return r
        } }
    }
}
