// Two writers on one store at once (threads, and separate processes), and a writer killed with SIGKILL:
// both writers finish with identical results, and the store always verifies.
import Foundation
import Testing
@testable import ArtifactStore

/// The work each writer does: objects (small and large), a tree, an action record and a ledger run per round.
/// Returns one line per round with the digests made, which must not depend on who else writes.
func storeWorkload(root: URL, scratch: URL, rounds: Range<Int>, bigSize: Int) throws -> [String] {
    let store = try ArtifactStore(root: root, onWarning: { _ in })
    var lines: [String] = []
    for i in rounds {
        let small = try store.put(Data("object \(i % 5)".utf8))
        let big = try store.put(pseudoRandomData(count: bigSize, seed: UInt64(i)))
        let treeDir = scratch.appendingPathComponent("t\(i)")
        try write("a \(i)", to: treeDir.appendingPathComponent("a.txt"))
        try write("shared", to: treeDir.appendingPathComponent("b/c.txt"))
        let tree = try store.putTree(treeDir)
        let key = Digest.of(Data("action \(i)".utf8)).hex
        try store.recordAction(ActionRecord(key: key, stage: "s\(i)", kind: "command",
                                            outputs: ["small": small, "big": big, "tree": tree],
                                            createdAt: Date(timeIntervalSince1970: 1_790_000_000), seconds: 0))
        let run = try store.ledger.beginRun(RunStart(recipePath: "r.yaml", recipeName: "r", recipeText: "",
                                                     recipeDigest: "", resolvedJSON: "{}", backend: "cpu",
                                                     device: "cpu", version: "0"))
        try store.ledger.recordStage(StageExecution(run: run, stage: "s\(i)", kind: "command", key: key, status: .ran,
                                                    seconds: 0, outputs: ["tree": tree]))
        try store.ledger.recordMetric(run: run, stage: "s\(i)", name: "round", value: Double(i))
        try store.ledger.endRun(run, status: .succeeded)
        guard let found = store.action(for: key), found.outputs["tree"] == tree else {
            throw StoreError.missing(tree, path: "action \(key) lost")
        }
        lines.append("\(i) \(small) \(big) \(tree)")
    }
    return lines
}

@Suite(.serialized) struct ConcurrencyTests {
    @Test func twoStoresOnOneRootInTwoThreads() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let root = dir.sub("store")
        let results = ResultBox()
        DispatchQueue.concurrentPerform(iterations: 2) { worker in
            results.set(worker, Result {
                try storeWorkload(root: root, scratch: dir.sub("scratch\(worker)"), rounds: 0..<24, bigSize: 1 << 20)
            })
        }
        let a = try results.get(0), b = try results.get(1)
        #expect(a.count == 24)
        #expect(a == b)
        let store = try ArtifactStore(root: root)
        let report = try store.verify()
        #expect(report.isClean)
        #expect(report.actionsChecked == 24)
        // Per round: big + tree + "a i" = 3 distinct objects; plus 5 smalls and the shared "shared" file.
        #expect(report.objectsChecked == 24 * 3 + 5 + 1)
        #expect(try store.ledger.runs().count == 48)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path + "/tmp").isEmpty)
    }

    @Test func oneStoreSharedByManyThreads() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let store = try ArtifactStore(root: dir.url)
        let results = ResultBox()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            results.set(worker, Result {
                try (0..<50).map { i in try store.put(pseudoRandomData(count: 10_000 + i, seed: UInt64(i))).hex }
            })
        }
        let first = try results.get(0)
        for worker in 1..<4 { #expect(try results.get(worker) == first) }
        #expect(try store.list().count == 50)
        #expect(try store.verify().isClean)
    }

    @Test func twoProcessesOnOneRoot() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let root = dir.sub("store")
        let children = try (0..<2).map { n in
            try spawnChild(root: root, scratch: dir.sub("scratch\(n)"), out: dir.sub("out\(n).txt"), rounds: 16)
        }
        for child in children { child.waitUntilExit() }
        for child in children { #expect(child.terminationStatus == 0) }
        let a = try String(contentsOf: dir.sub("out0.txt"), encoding: .utf8)
        let b = try String(contentsOf: dir.sub("out1.txt"), encoding: .utf8)
        #expect(a.split(separator: "\n").count == 16)
        #expect(a == b)
        let store = try ArtifactStore(root: root)
        #expect(try store.verify().isClean)
        #expect(try store.ledger.runs().filter { $0.status == .succeeded }.count == 32)
    }

    @Test func killedWriterLeavesAStoreThatVerifies() throws {
        let dir = try TempDir(); defer { dir.remove() }
        let root = dir.sub("store")
        let child = try spawnChild(root: root, scratch: dir.sub("scratch"), out: dir.sub("out.txt"), rounds: 100_000,
                                   bigSize: 8 << 20)
        // Wait until it has finished a few rounds, then kill it mid-flight.
        let deadline = Date(timeIntervalSinceNow: 120)
        while child.isRunning && Date() < deadline {
            let shards = (try? FileManager.default.contentsOfDirectory(atPath: root.path + "/actions")) ?? []
            if shards.count >= 3 { break }
            usleep(20_000)
        }
        // Aim the kill at a moment when an object is being written (a temp file exists).
        let writing = Date(timeIntervalSinceNow: 5)
        while Date() < writing, ((try? FileManager.default.contentsOfDirectory(atPath: root.path + "/tmp")) ?? []).isEmpty {
            usleep(500)
        }
        #expect(child.isRunning, "the child must still be writing when killed")
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        #expect(child.terminationReason == .uncaughtSignal)

        let store = try ArtifactStore(root: root)
        let report = try store.verify()
        #expect(report.isClean, "\(report)")
        // What the kill interrupted is at most a temp file (young, so kept until it is a minute old).
        #expect(report.staleTempFiles == 0)
        #expect(report.objectsChecked > 0)
        #expect(try store.ledger.runs().allSatisfy { $0.status != .running }, "the killed run is marked interrupted")
        // The next run finishes, reusing what the killed one stored.
        let lines = try storeWorkload(root: root, scratch: dir.sub("scratch-next"), rounds: 0..<3, bigSize: 8 << 20)
        #expect(lines.count == 3)
        #expect(try store.verify().isClean)
    }
}

/// When the parent test re-runs this test binary as a child, this "test" is the child's work.
@Test(.enabled(if: ProcessInfo.processInfo.environment["HPRUNE_STORE_CHILD_ROOT"] != nil))
func storeChildProcessWorker() throws {
    let env = ProcessInfo.processInfo.environment
    let root = URL(fileURLWithPath: try #require(env["HPRUNE_STORE_CHILD_ROOT"]))
    let scratch = URL(fileURLWithPath: try #require(env["HPRUNE_STORE_CHILD_SCRATCH"]))
    let rounds = Int(env["HPRUNE_STORE_CHILD_ROUNDS"] ?? "") ?? 1
    let bigSize = Int(env["HPRUNE_STORE_CHILD_BIG"] ?? "") ?? (1 << 20)
    let lines = try storeWorkload(root: root, scratch: scratch, rounds: 0..<rounds, bigSize: bigSize)
    try Data(lines.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: try #require(env["HPRUNE_STORE_CHILD_OUT"])))
}

/// Starts this test binary again, running only `storeChildProcessWorker` on `root`.
func spawnChild(root: URL, scratch: URL, out: URL, rounds: Int, bigSize: Int = 1 << 20) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = ["--testing-library", "swift-testing", "--filter", "storeChildProcessWorker"]
    var env = ProcessInfo.processInfo.environment
    env["HPRUNE_STORE_CHILD_ROOT"] = root.path
    env["HPRUNE_STORE_CHILD_SCRATCH"] = scratch.path
    env["HPRUNE_STORE_CHILD_OUT"] = out.path
    env["HPRUNE_STORE_CHILD_ROUNDS"] = String(rounds)
    env["HPRUNE_STORE_CHILD_BIG"] = String(bigSize)
    process.environment = env
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}

/// Results from concurrent workers, by index.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Int: Result<[String], any Error>] = [:]
    func set(_ i: Int, _ r: Result<[String], any Error>) { lock.lock(); results[i] = r; lock.unlock() }
    func get(_ i: Int) throws -> [String] {
        lock.lock(); defer { lock.unlock() }
        return try results[i]!.get()
    }
}
