// Every stage of every committed recipe decodes into its kind's typed `Params` — the check `hprune validate` and
// `plan` do not need (they stop at the schema), so a kind whose `Params` and schema drift apart fails here, not
// in the middle of someone's run. The paper recipes read their models from the environment; like `.ci/run`, this
// points them at the synthetic layout models of Tests/Fixtures/layouts.
import Foundation
import Scheduler
import StageGraph
import Stages
import Testing
import TestSupport

@Test func everyRecipeStageDecodesIntoItsKindsParams() throws {
    let root = repositoryRoot()
    let layouts = root.appendingPathComponent("Tests/Fixtures/layouts").path
    let env = ["SD35_LARGE_TURBO": layouts + "/sd35_large_turbo",
               "SD35_CALIBRATION": layouts + "/sd35_large_turbo/calibration.safetensors",
               "FLUX1_SCHNELL": layouts + "/flux1_schnell",
               "FLUX_CALIBRATION": layouts + "/flux1_schnell/calibration.safetensors"]
    var recipes: [String] = []
    for top in ["recipes", "Examples"] {
        let e = FileManager.default.enumerator(atPath: root.appendingPathComponent(top).path)
        while let rel = e?.nextObject() as? String {
            guard rel.hasSuffix(".yaml"), !rel.split(separator: "/").contains("base"),
                  !(rel.split(separator: "/").last ?? "").hasPrefix("_") else { continue }
            recipes.append(top + "/" + rel)
        }
    }
    #expect(recipes.count >= 20, "found \(recipes.count) recipes")
    let kinds = StageKinds.executables
    var decoded = 0
    for r in recipes.sorted() {
        let ws = try Workspace.load(path: root.appendingPathComponent(r).path, environment: env, registry: StageKinds.registry)
        for stage in ws.graph.stages {
            guard let kind = kinds[stage.kind.name] as? any TypedStageKind else { continue }
            #expect(throws: Never.self, "\(r): stage '\(stage.name)' (\(stage.kind.name))") { _ = try kind.decodeParams(stage.params) }
            decoded += 1
        }
    }
    #expect(decoded > 50)
}
