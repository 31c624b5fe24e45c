// Runs real recipes through Workspace → Scheduler → ArtifactStore (temp store, real libyaml, real SQLite),
// with the registered kinds plus `test-scores`, a test-only kind that publishes a Sensitivity JSON file
// (the `score` kind is written elsewhere; `command` outputs are `files`, not `sensitivity`).

import ArtifactStore
import Compression
import Foundation
import ModelStore
import Scheduler
import StageGraph
import Stages
import TensorCore
import TestSupport
import Testing

/// Publishes the Sensitivity JSON at `path` (relative to the recipe) as a `sensitivity` artifact.
struct TestScoresStage: ExecutableStageKind {
    let name = "test-scores"
    let version = 1
    let summary = "test only: a Sensitivity from a file"
    var usesBackend: Bool { false }
    let schema = Schema([Field("path", .string, required: true, doc: "file")])
    func outputs(params: ParamValue) -> [PortSpec] { [PortSpec("scores", .sensitivity)] }
    func defaultOutput(params: ParamValue) -> String { "scores" }
    func fileDependencies(params: ParamValue) -> [String] { [params["path"]?.string ?? ""] }
    func run(_ ctx: StageContext) async throws -> [String: Digest] {
        let data = try Data(contentsOf: ctx.recipeDirectory.appendingPathComponent(ctx.params["path"]?.string ?? ""))
        _ = try Sensitivity.decode(data, source: "test-scores")
        return ["scores": try ctx.store.put(data)]
    }
}

/// Tests/Fixtures.
let fixtures = repositoryRoot().appendingPathComponent("Tests/Fixtures").path

struct RecipeRun {
    var results: [StageResult]
    var store: ArtifactStore
    func result(_ stage: String) -> StageResult? { results.first { $0.name == stage } }
    func model(_ stage: String) throws -> ModelManifest {
        let r = try #require(result(stage))
        return try ModelStore.manifest(try #require(r.outputs["model"]), store: store)
    }
}

/// Writes `yaml` as r.yaml in `dir` and runs it with a store in `dir/.hprune`.
/// `replacing` swaps registered kinds for variants of the same name (e.g. a `score` that stops mid-way).
func runRecipe(_ dir: TemporaryDirectory, _ yaml: String, replacing: [any ExecutableStageKind] = []) async throws -> RecipeRun {
    let path = dir.write("r.yaml", yaml)
    let swapped = Set(replacing.map(\.name))
    let kinds: [any ExecutableStageKind] = StageKinds.all.filter { !swapped.contains($0.name) } + replacing + [TestScoresStage()]
    let ws = try Workspace.load(path: path, environment: [:], registry: StageRegistry(kinds))
    let store = try ArtifactStore(root: URL(fileURLWithPath: dir.path + "/.hprune"))
    let sources = try ws.hashSources(store: store)
    let deps = try ws.hashFileDependencies(store: store)
    let s = Scheduler(graph: ws.graph, kinds: Dictionary(uniqueKeysWithValues: kinds.map { ($0.name, $0) }), store: store,
                      context: ws.keyContext(backend: "cpu", numerics: try BackendRegistry.all.numerics("cpu").versions),
                      sources: sources, fileDependencies: deps,
                      recipeDirectory: ws.recipeDirectory, backend: "cpu", options: RunOptions(jobs: 2))
    return RecipeRun(results: await s.run(), store: store)
}

/// Copies a fixture model folder (config + weights only) into `dir/name`.
func copyModel(_ fixture: String, into dir: TemporaryDirectory, as name: String = "teacher") throws -> String {
    let dest = dir.path + "/" + name
    try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
    for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
        try FileManager.default.copyItem(atPath: fixtures + "/models/\(fixture)/\(f)", toPath: dest + "/" + f)
        // Settled files (older than 2 s) are remembered by the store's source-hash memo.
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: dest + "/" + f)
    }
    return name
}
