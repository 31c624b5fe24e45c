// Maintenance behind `hprune cache ls|du|verify|gc`: list objects, measure disk use, re-hash everything
// (evicting what is corrupt), and collect what the last N runs and the pins do not reach (actions, the partial
// results of their executions, and the objects of both).
import Foundation

/// One object in the store.
public struct ObjectInfo: Sendable, Codable, Equatable {
    public var digest: Digest
    public var size: Int64
    public var modified: Date
}

/// Disk use of a store, by part (bytes are file sizes; hard links into materialized folders count once).
public struct Usage: Sendable, Codable, Equatable {
    public var objects: Int
    public var objectBytes: Int64
    public var actions: Int
    public var actionBytes: Int64
    public var tmpFiles: Int
    public var tmpBytes: Int64
    /// ledger.sqlite with its -wal and -shm files.
    public var ledgerBytes: Int64
    /// Partial-result records (`partials/`; their bytes are objects, counted above).
    public var partials = 0
    public var partialBytes: Int64 = 0
    public var totalBytes: Int64 { objectBytes + actionBytes + partialBytes + tmpBytes + ledgerBytes }
}

/// What `verify()` found. `isClean` when nothing was wrong.
public struct VerifyReport: Sendable, Codable, Equatable {
    /// A damaged object or file, already removed.
    public struct Problem: Sendable, Codable, Equatable {
        public var path: String
        public var reason: String
    }
    public var objectsChecked = 0
    public var bytesChecked: Int64 = 0
    public var actionsChecked = 0
    /// Objects whose bytes did not match their digest (removed).
    public var corruptObjects: [Problem] = []
    /// Files under objects/ that are not objects (bad names, directories where files belong) — removed.
    public var strayFiles: [Problem] = []
    /// Action records that could not be read or needed a missing object (removed).
    public var brokenActions: [Problem] = []
    public var partialsChecked = 0
    /// Partial-result records that could not be read or needed a missing object (removed; the work is redone).
    public var brokenPartials: [Problem] = []
    /// Temp files left by crashed writers (removed).
    public var staleTempFiles = 0
    /// Stage scratch folders (`tmp/stage-<id>`) that no live process holds: left by a killed run. Reported,
    /// not removed (`gc` removes them); they do not make the store unclean.
    public var staleStageDirectories: [String] = []
    /// Problems SQLite's integrity check found in the ledger (not repaired).
    public var ledgerProblems: [String] = []
    public var isClean: Bool {
        corruptObjects.isEmpty && strayFiles.isEmpty && brokenActions.isEmpty && brokenPartials.isEmpty && ledgerProblems.isEmpty
    }
}

/// What `gc` kept and removed (or, with `dryRun`, would remove).
public struct GCReport: Sendable, Codable, Equatable {
    public var dryRun: Bool
    /// The runs whose actions were kept, newest first.
    public var keptRuns: [String]
    public var keptActions: Int
    public var keptObjects: Int
    public var keptBytes: Int64
    /// Keys of the action records removed.
    public var removedActions: [String]
    /// The objects removed.
    public var removedObjects: [Digest]
    public var removedBytes: Int64
    public var removedTempFiles: Int
    /// Stage scratch folders left by killed runs (removed, or with `dryRun` found).
    public var staleStageDirectories: [String] = []
    /// Partial-result namespaces kept (an owner among the kept runs' actions) and removed.
    public var keptPartials: [String] = []
    public var removedPartials: [String] = []
}

extension ArtifactStore {
    /// Every object in the store, sorted by digest.
    public func list() throws -> [ObjectInfo] {
        var infos: [ObjectInfo] = []
        for (digest, path) in objectFiles().objects {
            guard let st = POSIX.lstat(path), POSIX.isRegular(st) else { continue }
            infos.append(ObjectInfo(digest: digest, size: Int64(st.st_size),
                                    modified: Date(timeIntervalSince1970: Double(POSIX.mtimeNanoseconds(st)) / 1e9)))
        }
        return infos.sorted { $0.digest < $1.digest }
    }

    /// Disk use by part.
    public func diskUsage() throws -> Usage {
        var usage = Usage(objects: 0, objectBytes: 0, actions: 0, actionBytes: 0, tmpFiles: 0, tmpBytes: 0, ledgerBytes: 0)
        for info in try list() {
            usage.objects += 1
            usage.objectBytes += info.size
        }
        for key in actionKeys() {
            guard let st = POSIX.lstat(actionPath(key)) else { continue }
            usage.actions += 1
            usage.actionBytes += Int64(st.st_size)
        }
        for ns in partialNamespaces() {
            for name in partialNames(in: ns) {
                guard let st = POSIX.lstat(partialPath(ns, name)) else { continue }
                usage.partials += 1
                usage.partialBytes += Int64(st.st_size)
            }
        }
        for name in (try? POSIX.listDirectory(tmpPath)) ?? [] {
            guard let st = POSIX.lstat(tmpPath + "/" + name) else { continue }
            usage.tmpFiles += 1
            usage.tmpBytes += Int64(st.st_size)
        }
        for suffix in ["", "-wal", "-shm"] {
            if let st = POSIX.lstat(ledger.path + suffix) { usage.ledgerBytes += Int64(st.st_size) }
        }
        return usage
    }

    /// Re-hashes every object and checks every action record and the ledger. Corrupt objects, stray files and
    /// broken records are removed (the stages that made them re-run) and listed in the report.
    public func verify() throws -> VerifyReport {
        var report = VerifyReport()
        let (objects, strays) = objectFiles()
        for path in strays {
            try? FileManager.default.removeItem(atPath: path)
            report.strayFiles.append(.init(path: path, reason: "not an object (its name is not a digest)"))
        }
        for (digest, path) in objects {
            guard let fd = try POSIX.openIfExists(path) else { continue }  // removed meanwhile
            defer { POSIX.close(fd) }
            let (actual, bytes) = try hashFile(descriptor: fd, path: path)
            report.objectsChecked += 1
            report.bytesChecked += bytes
            if actual != digest {
                evictObject(digest, reason: "its bytes hash to \(actual.short)")
                report.corruptObjects.append(.init(path: path, reason: "bytes hash to \(actual.hex)"))
            }
        }
        for key in actionKeys() {
            let path = actionPath(key)
            guard let fd = try POSIX.openIfExists(path) else { continue }
            let inode = UInt64(try POSIX.fstat(fd, path: path).st_ino)
            let data = try POSIX.readAll(fd, path: path)
            POSIX.close(fd)
            report.actionsChecked += 1
            if case .failure(let problem) = checkRecord(data, key: key) {
                evictRecord(path, inode: inode, reason: problem.reason)
                for (digest, reason) in problem.corruptObjects {
                    evictObject(digest, reason: reason)
                    report.corruptObjects.append(.init(path: objectPath(digest), reason: reason))
                }
                report.brokenActions.append(.init(path: path, reason: problem.reason))
            }
        }
        for ns in partialNamespaces() {
            for name in partialNames(in: ns) {
                let path = partialPath(ns, name)
                guard let data = try? Data(contentsOf: URL(fileURLWithPath: path)) else { continue }
                report.partialsChecked += 1
                if case .failure(let problem) = checkPartial(data, namespace: ns, name: name) {
                    try? POSIX.unlink(path)
                    warn(StoreWarning(path: path, message: "\(problem.reason); removed the partial result, its work will be done again"))
                    for (digest, reason) in problem.corruptObjects {
                        evictObject(digest, reason: reason)
                        report.corruptObjects.append(.init(path: objectPath(digest), reason: reason))
                    }
                    report.brokenPartials.append(.init(path: path, reason: problem.reason))
                }
            }
        }
        report.staleTempFiles = removeStaleTempFiles(olderThan: Self.staleTempAge).count
        report.staleStageDirectories = staleStageDirectories(remove: false)
        report.ledgerProblems = try ledger.integrityProblems()
        return report
    }

    /// Removes every action record and object that neither the last `keepingRuns` runs (and runs still going)
    /// nor a pin reach, plus stale temp files and the scratch folders of stages no live process runs. With `dryRun`, only reports what it would remove.
    ///
    /// - Throws: `StoreError.busy` if another store instance (another process, or another `ArtifactStore` in
    ///   this one) is open on the same directory — unless `dryRun`.
    public func gc(keepingRuns: Int = 10, dryRun: Bool) throws -> GCReport {
        if dryRun { return try collect(keepingRuns: keepingRuns, dryRun: true) }
        return try withExclusiveLock { try collect(keepingRuns: keepingRuns, dryRun: false) }
    }

    private func collect(keepingRuns: Int, dryRun: Bool) throws -> GCReport {
        let keptRuns = try ledger.runs(limit: max(keepingRuns, 0)).map(\.id.rawValue)
        var keepKeys = try ledger.actionKeys(ofLatestRuns: keepingRuns)
        var rootObjects: [Digest] = []
        for pin in try ledger.pins() {
            switch pin.kind {
            case .action: keepKeys.insert(pin.name)
            case .object: if let d = Digest(hex: pin.name), contains(d) { rootObjects.append(d) }
            }
        }
        var reachable: [String: Int64] = try closure(of: rootObjects)
        var keptActions = 0
        for key in keepKeys.sorted() {
            guard let record = action(for: key) else { continue }  // absent or broken (then evicted)
            keptActions += 1
            for (hex, size) in record.objectSizes { reachable[hex] = size }
            for digest in record.outputs.values where reachable[digest.hex] == nil {
                reachable[digest.hex] = size(of: digest) ?? 0
            }
        }

        // Partial results live while an execution that wrote them belongs to a kept run (any status: an interrupted
        // run resumes from them) or is pinned, or while they are newer than the oldest kept run (a run killed before
        // its stage was recorded).
        let owners = try ledger.executionKeys(ofLatestRuns: keepingRuns).union(keepKeys)
        let window = try ledger.runs(limit: max(keepingRuns, 0)).last?.startedAt
        var keptPartials: [String] = []
        var removedPartials: [String] = []
        let partialsByNamespace = Dictionary(grouping: allPartials(), by: \.namespace)
        for ns in partialNamespaces() {
            let records = partialsByNamespace[ns] ?? []
            if records.contains(where: { r in owners.contains(r.owner) || window.map { r.createdAt >= $0 } ?? false }) {
                keptPartials.append(ns)
                for r in records { reachable[r.digest.hex] = r.size }
            } else {
                removedPartials.append(ns)
            }
        }

        let removedActions = actionKeys().filter { !keepKeys.contains($0) }
        var removedObjects: [Digest] = []
        var removedBytes: Int64 = 0
        var keptBytes: Int64 = 0
        var keptObjects = 0
        for info in try list() {
            if reachable[info.digest.hex] != nil {
                keptObjects += 1
                keptBytes += info.size
            } else {
                removedObjects.append(info.digest)
                removedBytes += info.size
            }
        }
        var removedTemp = 0
        if !dryRun {
            for key in removedActions { try POSIX.unlink(actionPath(key)) }
            for digest in removedObjects { try POSIX.unlink(objectPath(digest)) }
            for ns in removedPartials { try FileManager.default.removeItem(atPath: partialsPath + "/" + ns) }
            removedTemp = removeStaleTempFiles(olderThan: Self.staleTempAge).count
        }
        let stages = staleStageDirectories(remove: !dryRun)
        return GCReport(dryRun: dryRun, keptRuns: keptRuns, keptActions: keptActions, keptObjects: keptObjects,
                        keptBytes: keptBytes, removedActions: removedActions, removedObjects: removedObjects,
                        removedBytes: removedBytes, removedTempFiles: removedTemp, staleStageDirectories: stages,
                        keptPartials: keptPartials, removedPartials: removedPartials)
    }

    /// Every file under objects/: those named like objects (with their digest) and strays.
    func objectFiles() -> (objects: [(Digest, String)], strays: [String]) {
        var objects: [(Digest, String)] = []
        var strays: [String] = []
        for shard in ((try? POSIX.listDirectory(objectsPath)) ?? []).sorted() {
            let shardPath = objectsPath + "/" + shard
            guard let st = POSIX.lstat(shardPath), POSIX.isDirectory(st), shard.utf8.count == 2,
                  shard.utf8.allSatisfy({ Digest.hexValue($0) != nil }), shard == shard.lowercased() else {
                strays.append(shardPath)
                continue
            }
            for name in ((try? POSIX.listDirectory(shardPath)) ?? []).sorted() {
                let path = shardPath + "/" + name
                if let digest = Digest(hex: shard + name), digest.hex == shard + name,
                   let st = POSIX.lstat(path), POSIX.isRegular(st) {
                    objects.append((digest, path))
                } else {
                    strays.append(path)
                }
            }
        }
        return (objects, strays)
    }
}
