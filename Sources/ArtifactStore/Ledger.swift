// Ledger: the run history in SQLite (GRDB DatabasePool, WAL, busy timeout) — runs, stage executions, metrics,
// remembered source-file digests and pins. Safe to use from several processes at once.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GRDB

/// A run's id: `r-YYYYMMDD-HHMMSS-xxxx` (UTC time, 4 random hex digits), so ids sort by start time.
public struct RunID: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public static func < (a: RunID, b: RunID) -> Bool { a.rawValue < b.rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// How a run ended (or that it has not).
public enum RunStatus: String, Sendable, Codable, CaseIterable {
    case running, succeeded, failed, cancelled
    /// The process died while the run was `running` (found and marked when a store is next opened on that host).
    case interrupted
}

/// What happened to one stage in one run.
public enum StageStatus: String, Sendable, Codable, CaseIterable {
    case ran, cached, failed, skipped, cancelled
}

/// What `Ledger.beginRun` records about a run before it starts.
public struct RunStart: Sendable, Equatable {
    public var recipePath: String
    public var recipeName: String
    /// The recipe file's text as read.
    public var recipeText: String
    /// Path → text of every file the recipe `extends` (transitively).
    public var extendedFiles: [String: String]
    /// Digest of the resolved recipe.
    public var recipeDigest: String
    /// The resolved recipe document (after extends, vars, --set), as JSON.
    public var resolvedJSON: String
    public var backend: String
    public var device: String
    public var version: String
    public var argv: [String]
    public var host: String

    public init(recipePath: String, recipeName: String, recipeText: String, extendedFiles: [String: String] = [:],
                recipeDigest: String, resolvedJSON: String, backend: String, device: String, version: String,
                argv: [String] = CommandLine.arguments, host: String = Ledger.hostName) {
        self.recipePath = recipePath
        self.recipeName = recipeName
        self.recipeText = recipeText
        self.extendedFiles = extendedFiles
        self.recipeDigest = recipeDigest
        self.resolvedJSON = resolvedJSON
        self.backend = backend
        self.device = device
        self.version = version
        self.argv = argv
        self.host = host
    }
}

/// One run as stored in the ledger.
public struct RunRecord: Sendable, Equatable {
    public var id: RunID
    public var start: RunStart
    public var startedAt: Date
    public var endedAt: Date?
    public var status: RunStatus
    public var pid: Int32
}

/// One stage's execution within a run.
public struct StageExecution: Sendable, Codable, Equatable {
    public var run: RunID
    public var stage: String
    public var kind: String
    public var key: String
    public var status: StageStatus
    public var seconds: Double
    public var peakMemoryBytes: Int64?
    /// Output port → artifact digest.
    public var outputs: [String: Digest]
    /// Last part of the stage's standard output / error (kept to 64 KiB each).
    public var stdoutTail: String
    public var stderrTail: String
    public var error: String?
    public var recordedAt: Date

    public init(run: RunID, stage: String, kind: String, key: String, status: StageStatus, seconds: Double,
                peakMemoryBytes: Int64? = nil, outputs: [String: Digest] = [:], stdoutTail: String = "",
                stderrTail: String = "", error: String? = nil, recordedAt: Date = Date()) {
        self.run = run
        self.stage = stage
        self.kind = kind
        self.key = key
        self.status = status
        self.seconds = seconds
        self.peakMemoryBytes = peakMemoryBytes
        self.outputs = outputs
        self.stdoutTail = stdoutTail
        self.stderrTail = stderrTail
        self.error = error
        self.recordedAt = recordedAt
    }
}

/// One measured value of a run.
public struct Metric: Sendable, Codable, Equatable {
    public var run: RunID
    public var stage: String
    public var name: String
    public var value: Double
    public var unit: String

    public init(run: RunID, stage: String, name: String, value: Double, unit: String = "") {
        self.run = run
        self.stage = stage
        self.name = name
        self.value = value
        self.unit = unit
    }
}

/// Something `gc` must keep whatever the recent runs use: an action (by key) or an object (by digest).
public struct Pin: Sendable, Equatable {
    public enum Kind: String, Sendable { case action, object }
    public var kind: Kind
    /// The action key or the object's hex digest.
    public var name: String
    public var note: String
    public var pinnedAt: Date
}

/// The run ledger: an SQLite database (WAL mode, 30 s busy timeout) shared by every process using the store.
public final class Ledger: Sendable {
    /// The database file.
    public let path: String
    private let pool: DatabasePool

    /// Longest stdout/stderr tail kept per stage execution.
    static let tailLimit = 64 << 10

    /// Opens (creating and migrating if needed) the ledger at `path`.
    public init(path: String) throws {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.label = "hprune.ledger"
        config.maximumReaderCount = 4
        do {
            pool = try DatabasePool(path: path, configuration: config)
            try pool.writeWithoutTransaction { db in
                // IMMEDIATE takes the write lock first, so two processes opening a new ledger cannot both migrate.
                try db.inTransaction(.immediate) {
                    try Self.migrate(db)
                    return .commit
                }
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.ledger(path: path, message: "\(error)")
        }
    }

    /// Schema versions, applied in order; `PRAGMA user_version` holds how many have been applied.
    private static let migrations: [String] = [
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY NOT NULL,
            recipe_path TEXT NOT NULL,
            recipe_name TEXT NOT NULL,
            recipe_text TEXT NOT NULL,
            extended_files TEXT NOT NULL,
            recipe_digest TEXT NOT NULL,
            resolved TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            status TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            backend TEXT NOT NULL,
            device TEXT NOT NULL,
            version TEXT NOT NULL,
            argv TEXT NOT NULL
        );
        CREATE INDEX runs_started ON runs(started_at);
        CREATE TABLE stage_executions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            stage TEXT NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            status TEXT NOT NULL,
            seconds REAL NOT NULL,
            peak_memory_bytes INTEGER,
            outputs TEXT NOT NULL,
            stdout_tail TEXT NOT NULL,
            stderr_tail TEXT NOT NULL,
            error TEXT,
            recorded_at REAL NOT NULL
        );
        CREATE INDEX stage_executions_run ON stage_executions(run_id);
        CREATE INDEX stage_executions_key ON stage_executions(key);
        CREATE TABLE metrics (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            stage TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            unit TEXT NOT NULL
        );
        CREATE INDEX metrics_run ON metrics(run_id);
        CREATE TABLE source_hashes (
            path TEXT PRIMARY KEY NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            digest TEXT NOT NULL,
            hashed_at REAL NOT NULL
        );
        CREATE TABLE pins (
            name TEXT PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL,
            note TEXT NOT NULL,
            pinned_at REAL NOT NULL
        );
        """,
        // 2: the canonical JSON each action key hashes, for `diff` and `plan --why` (older ledgers simply lack rows).
        """
        CREATE TABLE action_inputs (
            key TEXT PRIMARY KEY NOT NULL,
            canonical TEXT NOT NULL,
            recorded_at REAL NOT NULL
        );
        """,
    ]

    private static func migrate(_ db: Database) throws {
        let applied = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
        guard applied <= migrations.count else {
            throw StoreError.ledger(path: db.description,
                                    message: "schema version \(applied) is newer than this hprune knows (\(migrations.count)); upgrade hprune")
        }
        for index in applied..<migrations.count {
            try db.execute(sql: migrations[index])
            try db.execute(sql: "PRAGMA user_version = \(index + 1)")
        }
    }

    /// This machine's host name.
    public static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func wrap<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.ledger(path: path, message: "\(error)")
        }
    }

    // MARK: Runs

    /// Records that a run starts now; returns its new id.
    public func beginRun(_ start: RunStart, at date: Date = Date()) throws -> RunID {
        try beginRun(start, at: date, pid: getpid())
    }

    func beginRun(_ start: RunStart, at date: Date, pid: Int32) throws -> RunID {
        try wrap {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "UTC")
            formatter.dateFormat = "yyyyMMdd-HHmmss"
            let stamp = formatter.string(from: date)
            let files = try jsonString(start.extendedFiles)
            let argv = try jsonString(start.argv)
            for _ in 0..<16 {
                let id = RunID("r-\(stamp)-\(String(format: "%04x", UInt16.random(in: 0...UInt16.max)))")
                let inserted: Bool = try pool.write { db in
                    try db.execute(sql: """
                        INSERT OR IGNORE INTO runs (id, recipe_path, recipe_name, recipe_text, extended_files, recipe_digest,
                            resolved, started_at, ended_at, status, host, pid, backend, device, version, argv)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)
                        """, arguments: [id.rawValue, start.recipePath, start.recipeName, start.recipeText, files,
                                         start.recipeDigest, start.resolvedJSON, date.timeIntervalSince1970,
                                         RunStatus.running.rawValue, start.host, Int(pid), start.backend,
                                         start.device, start.version, argv])
                    return db.changesCount == 1
                }
                if inserted { return id }
            }
            throw StoreError.ledger(path: path, message: "could not pick an unused run id")
        }
    }

    /// Records how a run ended.
    public func endRun(_ id: RunID, status: RunStatus, at date: Date = Date()) throws {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "UPDATE runs SET status = ?, ended_at = ? WHERE id = ?",
                               arguments: [status.rawValue, date.timeIntervalSince1970, id.rawValue])
                if db.changesCount == 0 { throw StoreError.runNotFound(id.rawValue) }
            }
        }
    }

    /// Records one stage's execution (stdout/stderr tails are cut to their last 64 KiB).
    public func recordStage(_ execution: StageExecution) throws {
        try wrap {
            let outputs = try jsonString(execution.outputs)
            try pool.write { db in
                try db.execute(sql: """
                    INSERT INTO stage_executions (run_id, stage, kind, key, status, seconds, peak_memory_bytes, outputs,
                        stdout_tail, stderr_tail, error, recorded_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [execution.run.rawValue, execution.stage, execution.kind, execution.key,
                                     execution.status.rawValue, execution.seconds, execution.peakMemoryBytes, outputs,
                                     Self.tail(execution.stdoutTail), Self.tail(execution.stderrTail), execution.error,
                                     execution.recordedAt.timeIntervalSince1970])
            }
        }
    }

    /// Keeps the canonical JSON that action key `key` hashes (the first one recorded wins: equal keys, equal JSON).
    public func recordActionInput(key: String, canonical: String) throws {
        guard !key.isEmpty else { return }
        try wrap {
            try pool.write { db in
                try db.execute(sql: "INSERT OR IGNORE INTO action_inputs (key, canonical, recorded_at) VALUES (?, ?, ?)",
                               arguments: [key, canonical, Date().timeIntervalSince1970])
            }
        }
    }

    /// The canonical JSON recorded for action key `key`, if any.
    public func actionInput(key: String) throws -> String? {
        guard !key.isEmpty else { return nil }
        return try wrap {
            try pool.read { db in
                try String.fetchOne(db, sql: "SELECT canonical FROM action_inputs WHERE key = ?", arguments: [key])
            }
        }
    }

    /// The newest execution of stage `stage` with an action key, preferring runs of the recipe named `recipeName`
    /// and executions that ran or were cached (what the cache holds) over ones that failed or were cancelled.
    /// What `plan --why` compares a stage's new action with. Nil when the stage never ran in this store.
    public func latestExecution(stage: String, recipeName: String) throws -> StageExecution? {
        let found: (String, Int64)? = try wrap {
            try pool.read { db in
                try Row.fetchOne(db, sql: """
                    SELECT s.run_id, s.id FROM stage_executions s JOIN runs r ON r.id = s.run_id
                    WHERE s.stage = ? AND s.key != ''
                    ORDER BY (r.recipe_name = ?) DESC, (s.status IN ('ran', 'cached')) DESC, s.id DESC LIMIT 1
                    """, arguments: [stage, recipeName]).map { ($0["run_id"], $0["id"]) }
            }
        }
        guard let (runID, _) = found else { return nil }
        let candidates = try stages(of: RunID(runID)).filter { $0.stage == stage && !$0.key.isEmpty }
        return candidates.last { $0.status == .ran || $0.status == .cached } ?? candidates.last
    }

    /// Records one metric.
    public func recordMetric(_ metric: Metric) throws {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO metrics (run_id, stage, name, value, unit) VALUES (?, ?, ?, ?, ?)",
                               arguments: [metric.run.rawValue, metric.stage, metric.name, metric.value, metric.unit])
            }
        }
    }

    /// Records a metric (convenience).
    public func recordMetric(run: RunID, stage: String, name: String, value: Double, unit: String = "") throws {
        try recordMetric(Metric(run: run, stage: stage, name: name, value: value, unit: unit))
    }

    /// Runs, newest first; at most `limit` if given.
    public func runs(limit: Int? = nil) throws -> [RunRecord] {
        try wrap {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT ?",
                                 arguments: [limit ?? -1]).map(Self.runRecord)
            }
        }
    }

    /// The run whose id is `id`, or the only one starting with it (`r-` may be left out). `latest` names the newest.
    ///
    /// - Throws: `StoreError.runNotFound` or `StoreError.ambiguousRun` (listing the candidates).
    public func run(id prefix: String) throws -> RunRecord {
        try wrap {
            if prefix == "latest" || prefix == "last" {
                guard let newest = try runs(limit: 1).first else { throw StoreError.runNotFound(prefix) }
                return newest
            }
            let candidates = prefix.hasPrefix("r-") ? [prefix] : [prefix, "r-" + prefix]
            for candidate in candidates {
                let escaped = candidate.replacingOccurrences(of: "\\", with: "\\\\")
                    .replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
                let rows = try pool.read { db in
                    try Row.fetchAll(db, sql: "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 50",
                                     arguments: [escaped + "%"])
                }
                let records = try rows.map(Self.runRecord)
                if let exact = records.first(where: { $0.id.rawValue == candidate }) { return exact }
                if records.count == 1 { return records[0] }
                if records.count > 1 { throw StoreError.ambiguousRun(prefix, matches: records.map(\.id.rawValue)) }
            }
            throw StoreError.runNotFound(prefix)
        }
    }

    /// The stage executions of a run, in the order they were recorded.
    public func stages(of run: RunID) throws -> [StageExecution] {
        try wrap {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM stage_executions WHERE run_id = ? ORDER BY id",
                                 arguments: [run.rawValue]).map { row in
                    let outputsText: String = row["outputs"]
                    let statusText: String = row["status"]
                    guard let status = StageStatus(rawValue: statusText) else {
                        throw StoreError.ledger(path: path, message: "stage status '\(statusText)' is unknown")
                    }
                    let recorded: Double = row["recorded_at"]
                    return StageExecution(
                        run: run, stage: row["stage"], kind: row["kind"], key: row["key"], status: status,
                        seconds: row["seconds"], peakMemoryBytes: row["peak_memory_bytes"],
                        outputs: try JSONDecoder().decode([String: Digest].self, from: Data(outputsText.utf8)),
                        stdoutTail: row["stdout_tail"], stderrTail: row["stderr_tail"], error: row["error"],
                        recordedAt: Date(timeIntervalSince1970: recorded))
                }
            }
        }
    }

    /// The newest stage execution that ran (was not taken from the cache) under action key `key`, with its
    /// metrics: where a cached stage's metrics and log live (`hprune report --html`). Nil when none is recorded.
    public func lastRan(key: String) throws -> (execution: StageExecution, metrics: [Metric])? {
        guard !key.isEmpty else { return nil }
        let found: (String, String)? = try wrap {
            try pool.read { db in
                try Row.fetchOne(db, sql: "SELECT run_id, stage FROM stage_executions WHERE key = ? AND status = 'ran' ORDER BY id DESC LIMIT 1",
                                 arguments: [key]).map { ($0["run_id"], $0["stage"]) }
            }
        }
        guard let (runID, stage) = found else { return nil }
        let run = RunID(runID)
        guard let execution = try stages(of: run).last(where: { $0.key == key && $0.status == .ran }) else { return nil }
        return (execution, try metrics(of: run).filter { $0.stage == stage })
    }

    /// The metrics of a run, in the order they were recorded.
    public func metrics(of run: RunID) throws -> [Metric] {
        try wrap {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM metrics WHERE run_id = ? ORDER BY id", arguments: [run.rawValue])
                    .map { Metric(run: run, stage: $0["stage"], name: $0["name"], value: $0["value"], unit: $0["unit"]) }
            }
        }
    }

    /// Action keys of the stages (ran or cached) of the newest `count` runs, plus those of runs still running.
    public func actionKeys(ofLatestRuns count: Int) throws -> Set<String> {
        try wrap {
            try pool.read { db in
                let keys = try String.fetchAll(db, sql: """
                    SELECT DISTINCT s.key FROM stage_executions s
                    WHERE s.status IN ('ran', 'cached') AND s.key != '' AND s.run_id IN (
                        SELECT id FROM (SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?)
                        UNION SELECT id FROM runs WHERE status = 'running')
                    """, arguments: [max(count, 0)])
                return Set(keys)
            }
        }
    }

    /// Action keys of every stage execution (any status: ran, cached, failed, cancelled, skipped with a key) of the
    /// newest `count` runs and of runs still running: the owners whose partial results `gc` keeps.
    public func executionKeys(ofLatestRuns count: Int) throws -> Set<String> {
        try wrap {
            try pool.read { db in
                Set(try String.fetchAll(db, sql: """
                    SELECT DISTINCT s.key FROM stage_executions s
                    WHERE s.key != '' AND s.run_id IN (
                        SELECT id FROM (SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?)
                        UNION SELECT id FROM runs WHERE status = 'running')
                    """, arguments: [max(count, 0)]))
            }
        }
    }

    // MARK: Pins

    /// Keeps an action's outputs (`kind: .action`, name = key) or an object (`kind: .object`, name = hex digest)
    /// through every `gc`.
    public func pin(_ kind: Pin.Kind, _ name: String, note: String = "") throws {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO pins (name, kind, note, pinned_at) VALUES (?, ?, ?, ?)",
                               arguments: [name, kind.rawValue, note, Date().timeIntervalSince1970])
            }
        }
    }

    /// Removes a pin; returns whether there was one.
    @discardableResult
    public func unpin(_ name: String) throws -> Bool {
        try wrap {
            try pool.write { db in
                try db.execute(sql: "DELETE FROM pins WHERE name = ?", arguments: [name])
                return db.changesCount > 0
            }
        }
    }

    /// Every pin.
    public func pins() throws -> [Pin] {
        try wrap {
            try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM pins ORDER BY name").compactMap { row in
                    let kind: String = row["kind"]
                    let at: Double = row["pinned_at"]
                    return Pin.Kind(rawValue: kind).map {
                        Pin(kind: $0, name: row["name"], note: row["note"], pinnedAt: Date(timeIntervalSince1970: at))
                    }
                }
            }
        }
    }

    // MARK: Maintenance

    /// Marks runs left `running` by a process of this host that no longer exists as `interrupted`.
    @discardableResult
    public func markAbandonedRuns() throws -> [RunID] {
        try wrap {
            let host = Self.hostName
            let rows = try pool.read { db in
                try Row.fetchAll(db, sql: "SELECT id, pid FROM runs WHERE status = 'running' AND host = ?", arguments: [host])
            }
            var marked: [RunID] = []
            for row in rows {
                let pid: Int32 = row["pid"]
                if kill(pid, 0) == 0 || errno == EPERM { continue }
                let id: String = row["id"]
                try pool.write { db in
                    try db.execute(sql: "UPDATE runs SET status = 'interrupted', ended_at = ? WHERE id = ? AND status = 'running'",
                                   arguments: [Date().timeIntervalSince1970, id])
                }
                marked.append(RunID(id))
            }
            return marked
        }
    }

    /// Runs SQLite's integrity check; returns the problems it reports (empty when sound).
    public func integrityProblems() throws -> [String] {
        try wrap {
            let lines = try pool.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
            return lines == ["ok"] ? [] : lines
        }
    }

    // MARK: Source hashes

    func sourceDigest(for key: SourceKey) throws -> Digest? {
        try wrap {
            try pool.read { db in
                let row = try Row.fetchOne(db, sql: "SELECT * FROM source_hashes WHERE path = ?", arguments: [key.path])
                guard let row else { return nil }
                let size: Int64 = row["size"], mtime: Int64 = row["mtime_ns"], inode: Int64 = row["inode"]
                guard size == key.size, mtime == key.mtimeNs, inode == key.inode else { return nil }
                let hex: String = row["digest"]
                return Digest(hex: hex)
            }
        }
    }

    func rememberSource(_ key: SourceKey, digest: Digest) throws {
        try wrap {
            try pool.write { db in
                try db.execute(sql: """
                    INSERT OR REPLACE INTO source_hashes (path, size, mtime_ns, inode, digest, hashed_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [key.path, key.size, key.mtimeNs, key.inode, digest.hex, Date().timeIntervalSince1970])
            }
        }
    }

    // MARK: Rows

    private static func runRecord(_ row: Row) throws -> RunRecord {
        let statusText: String = row["status"]
        let filesText: String = row["extended_files"]
        let argvText: String = row["argv"]
        let started: Double = row["started_at"]
        let ended: Double? = row["ended_at"]
        let start = RunStart(
            recipePath: row["recipe_path"], recipeName: row["recipe_name"], recipeText: row["recipe_text"],
            extendedFiles: (try? JSONDecoder().decode([String: String].self, from: Data(filesText.utf8))) ?? [:],
            recipeDigest: row["recipe_digest"], resolvedJSON: row["resolved"], backend: row["backend"],
            device: row["device"], version: row["version"],
            argv: (try? JSONDecoder().decode([String].self, from: Data(argvText.utf8))) ?? [], host: row["host"])
        return RunRecord(id: RunID(row["id"]), start: start, startedAt: Date(timeIntervalSince1970: started),
                         endedAt: ended.map { Date(timeIntervalSince1970: $0) },
                         status: RunStatus(rawValue: statusText) ?? .failed, pid: row["pid"])
    }

    private static func tail(_ text: String) -> String {
        let utf8 = text.utf8
        guard utf8.count > tailLimit else { return text }
        return String(decoding: utf8.suffix(tailLimit), as: UTF8.self)
    }
}

private func jsonString<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
