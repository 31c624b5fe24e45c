// The ledger: runs, stage executions and metrics round-trip through a real SQLite file; ids resolve by prefix.
import Foundation
import Testing
@testable import ArtifactStore

@Suite struct LedgerTests {
    func start(_ name: String = "quickstart") -> RunStart {
        RunStart(recipePath: "recipes/\(name).yaml", recipeName: name, recipeText: "recipe: 1\nname: \(name)\n",
                 extendedFiles: ["recipes/base.yaml": "recipe: 1\n"], recipeDigest: String(repeating: "c", count: 64),
                 resolvedJSON: "{\"name\":\"\(name)\"}", backend: "cpu", device: "x86_64 AVX-512", version: "0.1.0",
                 argv: ["hprune", "run", "recipes/\(name).yaml"])
    }

    @Test func runRoundTrip() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let ledger = store.ledger
        let began = Date(timeIntervalSince1970: 1_790_000_000)
        let id = try ledger.beginRun(start(), at: began)
        #expect(id.rawValue.range(of: #"^r-\d{8}-\d{6}-[0-9a-f]{4}$"#, options: .regularExpression) != nil)
        let out = try store.put(Data("o".utf8))
        try ledger.recordStage(StageExecution(run: id, stage: "prune", kind: "command", key: "k1", status: .ran,
                                              seconds: 2.5, peakMemoryBytes: 1 << 30, outputs: ["out": out],
                                              stdoutTail: "done\n", stderrTail: String(repeating: "e", count: 100_000),
                                              error: nil))
        try ledger.recordStage(StageExecution(run: id, stage: "eval", kind: "command", key: "k2", status: .failed,
                                              seconds: 0.1, error: "exit 3"))
        try ledger.recordMetric(run: id, stage: "eval", name: "latency", value: 0.25, unit: "s")
        try ledger.recordMetric(Metric(run: id, stage: "eval", name: "params", value: 2.0e9))
        try ledger.endRun(id, status: .failed, at: began.addingTimeInterval(3))

        let run = try ledger.run(id: id.rawValue)
        #expect(run.start == start())
        #expect(run.status == .failed)
        #expect(run.startedAt == began)
        #expect(run.endedAt == began.addingTimeInterval(3))
        #expect(run.pid == getpid())
        let stages = try ledger.stages(of: id)
        #expect(stages.map(\.stage) == ["prune", "eval"])
        #expect(stages[0].outputs == ["out": out] && stages[0].peakMemoryBytes == 1 << 30)
        #expect(stages[0].stderrTail.utf8.count == 64 << 10, "tails are cut to 64 KiB")
        #expect(stages[1].status == .failed && stages[1].error == "exit 3")
        #expect(try ledger.metrics(of: id) == [Metric(run: id, stage: "eval", name: "latency", value: 0.25, unit: "s"),
                                              Metric(run: id, stage: "eval", name: "params", value: 2.0e9, unit: "")])
        #expect(throws: StoreError.runNotFound("r-nope")) { try ledger.endRun(RunID("r-nope"), status: .failed) }
    }

    @Test func prefixLookup() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let ledger = try ArtifactStore(root: dir.url).ledger
        let t = Date(timeIntervalSince1970: 1_790_000_000)
        let a = try ledger.beginRun(start("a"), at: t)
        let b = try ledger.beginRun(start("b"), at: t.addingTimeInterval(86_400 * 40))
        #expect(try ledger.run(id: a.rawValue).id == a)
        #expect(try ledger.run(id: String(a.rawValue.prefix(12))).id == a)  // "r-2026xxxx-…" differs by month
        #expect(try ledger.run(id: String(b.rawValue.dropFirst(2).prefix(8))).id == b, "the r- may be left out")
        #expect(try ledger.run(id: "latest").id == b)
        #expect(throws: StoreError.ambiguousRun("r-", matches: [a.rawValue, b.rawValue])) { try ledger.run(id: "r-") }
        #expect(throws: StoreError.runNotFound("zz")) { try ledger.run(id: "zz") }
        #expect(throws: StoreError.runNotFound("r-%")) { try ledger.run(id: "r-%") }
        #expect(try ledger.runs().map(\.id) == [b, a])
        #expect(try ledger.runs(limit: 1).map(\.id) == [b])
    }

    @Test func runsOfDeadProcessesAreMarkedInterrupted() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let mine = try store.ledger.beginRun(start())
        // A process that has exited: its pid is free (until reused, which the test cannot rule out but is rare).
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        let dead = try store.ledger.beginRun(start("dead"), at: Date(timeIntervalSinceNow: -10), pid: child.processIdentifier)
        let reopened = try ArtifactStore(root: dir.url)
        #expect(try reopened.ledger.run(id: dead.rawValue).status == .interrupted)
        #expect(try reopened.ledger.run(id: mine.rawValue).status == .running)
    }

    @Test func stateSurvivesReopening() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let id = try ArtifactStore(root: dir.url).ledger.beginRun(start())
        let again = try ArtifactStore(root: dir.url)
        #expect(try again.ledger.run(id: id.rawValue).start.recipeName == "quickstart")
        #expect(try again.ledger.integrityProblems().isEmpty)
    }

    @Test func damagedLedgerFileIsAClearError() throws {
        let dir = try TempDir(); defer { dir.remove() }
        try write(String(repeating: "not a database ", count: 500), to: dir.sub("ledger.sqlite"))
        #expect {
            _ = try ArtifactStore(root: dir.url)
        } throws: { error in
            guard case StoreError.ledger(let path, _) = error else { return false }
            return path == dir.path + "/ledger.sqlite" && "\(error)".contains("move it aside")
        }
    }
}
