// The planner as a pure function over small graphs, the scheduler in-process with real `write` stages (TestKinds),
// and the progress bar's two renderings.
import ArtifactStore
import Foundation
import RecipeLanguage
import Scheduler
import StageGraph
import TestKinds
import Testing
import TestSupport

func workspace(_ dir: TemporaryDirectory, _ text: String) throws -> Workspace {
    let path = dir.write("r.yaml", text)
    return try Workspace.load(path: path, environment: [:], registry: TestKinds.registry)
}

let diamond = """
    recipe: 1
    stages:
      a: { kind: write, text: a, outputs: [a] }
      b: { kind: write, text: b, inputs: { a: a }, outputs: [b] }
      c: { kind: write, text: c, inputs: { a: a }, outputs: [c] }
      d: { kind: write, text: d, inputs: { b: b, c: c }, outputs: [d] }
    """

@Test func planKnowsKeysOnlyBelowCachedStages() throws {
    let dir = TemporaryDirectory()
    let ws = try workspace(dir, diamond)
    let ctx = KeyContext(seed: 0, backendClass: "cpu", numerics: [:])
    // Nothing cached: only the root has a key.
    let empty = Planner.plan(ws.graph, sourceDigests: [:], context: ctx) { _ in nil }
    #expect(empty.entries.map { $0.key != nil } == [true, false, false, false])
    #expect(empty.entries.allSatisfy { !$0.cached })
    // The root cached (with a made-up output digest): its dependents get keys.
    let rootKey = try #require(empty.entries[0].key)
    let out = Digest.of(Data("a".utf8))
    let partial = Planner.plan(ws.graph, sourceDigests: [:], context: ctx) { key in
        key == rootKey ? ["files": out, "a": out] : nil
    }
    #expect(partial.entries.map(\.cached) == [true, false, false, false])
    #expect(partial.entries.map { $0.key != nil } == [true, true, true, false])
    // --force plans the stage as not cached even when it is.
    let forced = Planner.plan(ws.graph, sourceDigests: [:], context: ctx, force: ["a"]) { key in
        key == rootKey ? ["files": out, "a": out] : nil
    }
    #expect(forced.entries[0].cached == false)
    #expect(forced.entries[0].forced)
    // Definition keys do not depend on the cache, and change downstream of a change.
    #expect(empty.entries.map(\.definitionKey) == partial.entries.map(\.definitionKey))
    let other = Planner.plan(ws.graph, sourceDigests: [:], context: KeyContext(seed: 1, backendClass: "cpu", numerics: [:])) { _ in nil }
    #expect(zip(empty.entries, other.entries).allSatisfy { $0.definitionKey != $1.definitionKey })
}

@Test func schedulerRunsTheDiamondAndReusesTheCache() async throws {
    let dir = TemporaryDirectory()
    let ws = try workspace(dir, diamond)
    let store = try ArtifactStore(root: dir.url.appendingPathComponent("store"))
    func run() async -> [StageResult] {
        await Scheduler(graph: ws.graph, kinds: TestKinds.executables, store: store,
                        context: ws.keyContext(backend: "cpu", numerics: [:]), sources: [:], recipeDirectory: ws.recipeDirectory,
                        backend: "cpu", options: RunOptions(jobs: 2)).run()
    }
    let first = await run()
    #expect(first.map(\.status) == [.ran, .ran, .ran, .ran], "\(first.map { $0.error ?? "" })")
    let tree = try store.readTree(try #require(first[3].outputs["d"]))
    #expect(String(decoding: try store.data(tree.entries[0].digest), as: UTF8.self) == "a\nb\na\nc\nd\n")
    let second = await run()
    #expect(second.map(\.status) == [.cached, .cached, .cached, .cached])
    #expect(second.map(\.outputs) == first.map(\.outputs))
    // The plan agrees with what ran.
    let plan = try ws.plan(store: store, backend: "cpu", numerics: [:])
    #expect(plan.entries.map(\.key) == first.map(\.key))
}

@Test func progressBarPlainLinesAreRateLimitedAndTerminalLinesRedraw() {
    final class Lines: @unchecked Sendable { var items: [String] = []; let lock = NSLock()
        func add(_ s: String) { lock.withLock { items.append(s) } } }
    let plain = Lines()
    let bar = ProgressSink(stage: "distill", isTerminal: false, emit: plain.add).bar(total: 1000, unit: "steps")
    for i in 0..<1000 { bar.advance(message: "loss \(i)") }
    // The first update prints, then at most one line per 5 s, and the last one always.
    #expect(plain.items.count == 2)
    #expect(plain.items.last!.contains("1000/1000 steps 100%"))
    #expect(plain.items.last!.contains("loss 999"))
    #expect(!plain.items.last!.hasPrefix("\r"))

    let tty = Lines()
    let redraw = ProgressSink(stage: "score", isTerminal: true, emit: tty.add).bar(total: 4)
    for _ in 0..<4 { redraw.advance() }
    #expect(tty.items.allSatisfy { $0.hasPrefix("\r\u{1B}[2K") })
    #expect(tty.items.last!.hasSuffix("\n"))
    #expect(tty.items.last!.contains("4/4"))
    #expect(ProgressBar.duration(75) == "1m15s")
    #expect(ProgressBar.duration(0.25) == "250ms")
}
