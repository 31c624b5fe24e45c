// Honest keys: the numerics version of each kernel family in use is part of the action key of a stage whose kind
// uses the backend — another family, or a bumped version, re-runs it instead of reusing its cached outputs — while a
// `write` stage's key (usesBackend false, as `command`'s) never changes. The action record and the plan keep the canonical JSON, and InputDiff says
// which field changed (params, input digests, numerics, files), in the plan and between two recipes.
import ArtifactStore
import Foundation
import Scheduler
import StageGraph
import TestKinds
import Testing
import TestSupport

/// A kind that computes with the backend (`usesBackend` is true by default): writes its `value` param and counts
/// how often it ran in `count_file`.
struct BackendStage: ExecutableStageKind {
    let name = "numeric"
    let version = 1
    let summary = "test only: a stage whose results depend on the backend's kernels"
    let schema = Schema([Field("value", .number(), default: .double(1), doc: "the value written"),
                         Field("count_file", .string, required: true, doc: "a file that gets one line per run"),
                         Field("input", .reference(.any), doc: "an upstream artifact")])
    func outputs(params: ParamValue) -> [PortSpec] { [PortSpec("out", .files)] }
    func defaultOutput(params: ParamValue) -> String { "out" }
    func run(_ ctx: StageContext) async throws -> [String: Digest] {
        let path = ctx.params["count_file"]?.string ?? ""
        let line = Data("\(ctx.numericsLine)\n".utf8)
        if let h = FileHandle(forWritingAtPath: path) { h.seekToEndOfFile(); h.write(line); h.closeFile() }
        else { _ = FileManager.default.createFile(atPath: path, contents: line) }
        return ["out": try ctx.store.put(Data("\(ctx.params["value"]?.double ?? 0)".utf8))]
    }
}

private func recipe(_ dir: TemporaryDirectory, value: String = "0.5") throws -> Workspace {
    let path = dir.write("r.yaml", """
        recipe: 1
        stages:
          shell: { kind: write, text: hi, outputs: [x] }
          num: { kind: numeric, value: \(value), count_file: \(dir.path)/count, input: shell }
        """)
    return try Workspace.load(path: path, environment: [:], registry: StageRegistry(TestKinds.executable + [BackendStage()]))
}

private func runs(_ dir: TemporaryDirectory) -> [String] {
    ((try? String(contentsOfFile: dir.path + "/count", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}

@Test func aNumericsChangeRerunsBackendStagesButNotCommands() async throws {
    let dir = TemporaryDirectory()
    let ws = try recipe(dir)
    let store = try ArtifactStore(root: dir.url.appendingPathComponent("store"))
    let kinds: [String: any ExecutableStageKind] = Dictionary(uniqueKeysWithValues: (TestKinds.executable + [BackendStage()]).map { ($0.name, $0) })
    func run(_ numerics: [String: Int]) async -> [StageResult] {
        await Scheduler(graph: ws.graph, kinds: kinds, store: store, context: ws.keyContext(backend: "cpu", numerics: numerics),
                        sources: [:], recipeDirectory: ws.recipeDirectory, backend: "cpu", options: RunOptions(jobs: 1)).run()
    }
    let avx2: [String: Int] = ["tensorcore": 1, "cpu": 1, "cpu.avx2": 1]
    let first = await run(avx2)
    #expect(first.map(\.status) == [.ran, .ran], "\(first.map { $0.error ?? "" })")
    #expect(await run(avx2).map(\.status) == [.cached, .cached])

    // The same family at a bumped version: the backend stage runs again; the write stage is cached, same key.
    var bumped = avx2
    bumped["cpu.avx2"] = 2
    let second = await run(bumped)
    #expect(second.map(\.status) == [.cached, .ran])
    #expect(second[0].key == first[0].key && second[1].key != first[1].key)
    // Another family: runs again too, with the family it ran on in its context.
    let third = await run(["tensorcore": 1, "cpu": 1, "cpu.avx512": 1])
    #expect(third.map(\.status) == [.cached, .ran])
    #expect(Set([first[1].key, second[1].key, third[1].key]).count == 3)
    #expect(runs(dir) == ["cpu=1,cpu.avx2=1,tensorcore=1", "cpu=1,cpu.avx2=2,tensorcore=1", "cpu=1,cpu.avx512=1,tensorcore=1"])

    // The record keeps the canonical JSON its key hashes, numerics included.
    let secondKey = try #require(second[1].key), firstKey = try #require(first[0].key)
    let record = try #require(store.action(for: secondKey))
    let canonical = try #require(record.canonical)
    #expect(ActionKey.hash(canonical) == record.key && canonical.contains(#""numerics":{"cpu":1,"cpu.avx2":2,"tensorcore":1}"#))
    #expect(second[1].canonical == canonical)
    #expect(store.action(for: firstKey)?.canonical?.contains("numerics") == false)

    // Which input changed, from the stored JSON of the cached action to the new one.
    let plan = Planner.plan(ws.graph, sourceDigests: [:], context: ws.keyContext(backend: "cpu", numerics: avx2)) { key in
        store.action(for: key)?.outputs
    }
    #expect(plan.entries.map(\.cached) == [true, true])
    let changes = try #require(InputDiff.changes(canonical, plan.entries[1].canonical))
    #expect(changes.map(\.description) == ["numerics cpu.avx2: 2 → 1"])
}

@Test func inputDiffNamesParamsInputsNumericsFilesAndPendingInputs() throws {
    let digestA = "sha256:" + String(repeating: "ab", count: 32), digestB = "sha256:" + String(repeating: "cd", count: 32)
    let a = #"{"backend":"cpu","files":{"s.py":"\#(String(repeating: "1", count: 64))"},"hprune":"0.1.0","kind":"distill","kind_version":1,"numerics":{"cpu":1,"cpu.avx512":1},"params":{"loss":{"feature":0.0001,"output":1},"metric":"sample-mse","student":"\#(digestA)","teacher":"\#(digestA)","components":["block","attn"]},"seed":0}"#
    let b = #"{"backend":"cpu","files":{"s.py":"\#(String(repeating: "2", count: 64))"},"hprune":"0.1.0","kind":"distill","kind_version":2,"numerics":{"cpu":1,"cpu.avx512":2},"params":{"loss":{"feature":0.001,"output":1},"metric":"velocity-mse","student":"\#(digestB)","teacher":"pending:teacher.model","components":["block"]},"seed":0}"#
    let changes = try #require(InputDiff.changes(a, b)).map(\.description)
    #expect(changes == [
        "file s.py: 111111111111… → 222222222222…",
        "kind_version: 1 → 2",
        "numerics cpu.avx512: 1 → 2",
        "params.loss.feature: 0.0001 → 0.001",
        #"params.metric: "sample-mse" → "velocity-mse""#,
        "input student: sha256:abababababab… → sha256:cdcdcdcdcdcd…",
        "input teacher: sha256:abababababab… → (after teacher runs)",
        #"params.components: ["block","attn"] → ["block"]"#,
    ])
    #expect(InputDiff.changes(a, a) == [])
    #expect(InputDiff.changes(a, "not json") == nil)
    // A family that is used on one side only.
    let c = a.replacingOccurrences(of: #""cpu.avx512":1"#, with: #""cpu.scalar":1"#)
    #expect(try #require(InputDiff.changes(a, c)).map(\.description) == ["numerics cpu.avx512: 1 → (absent)", "numerics cpu.scalar: (absent) → 1"])
}

@Test func planKeepsProvisionalJSONAndDiffSaysWhyAStageReruns() throws {
    let dir = TemporaryDirectory()
    let wa = try recipe(dir, value: "0.5"), wb = try recipe(dir, value: "0.25")
    let numerics = ["cpu.avx2": 1]
    let pa = Planner.plan(wa.graph, sourceDigests: [:], context: wa.keyContext(backend: "cpu", numerics: numerics)) { _ in nil }
    let pb = Planner.plan(wb.graph, sourceDigests: [:], context: wb.keyContext(backend: "cpu", numerics: numerics)) { _ in nil }
    // Below a stage that must run the key is unknown, but the JSON to compare names the pending input.
    #expect(pb.entries[1].key == nil && pb.entries[1].canonical.contains(#""input":"pending:shell.files""#))
    #expect(ActionKey.hash(pb.entries[0].canonical) == pb.entries[0].key)
    let c = Compare.graphs(wa.graph, pa, wb.graph, pb, documentA: wa.recipe.document, documentB: wb.recipe.document)
    #expect(c.rerun == ["num"])
    #expect(c.reasons["num"]?.map(\.description) == ["params.value: 0.5 → 0.25"])
}
