// Enum-like stage params (`score`'s `metric` / `method`, `evaluate`'s `metrics`) are checked as choices at
// validate time with a did-you-mean, from `--set` overrides exactly as from the recipe file: an unknown value can
// no longer reach a stage's code (where `score` once summed MSE for any metric its switch did not name).
import Foundation
import Testing
import TestSupport

@Test func unknownScoreAndEvaluateChoicesAreRejectedFromSetAndFromTheRecipe() throws {
    let quickstart = repositoryRoot().appendingPathComponent("recipes/quickstart.yaml").path
    #expect(try CLI.run(["validate", quickstart]).status == 0)
    for (set, hint) in [("stages.score.metric=psnrr", "did you mean 'psnr'?"),
                        ("stages.score.method=taylr", "did you mean 'taylor'?"),
                        ("stages.score.import={path: s.json, format: hierarchical_prune}", "did you mean 'hierarchicalprune'?"),
                        ("stages.evaluate.metrics=[memory, latncy]", "did you mean 'latency'?")] {
        let r = try CLI.run(["validate", quickstart, "--set", set])
        #expect(r.status == 2 && r.stderr.contains("<--set 1>:1:") && r.stderr.contains(hint), "\(set): \(r.stderr)")
    }
    // The same value written in the recipe: the same check, located in the file.
    let dir = TemporaryDirectory()
    let text = try String(contentsOfFile: quickstart, encoding: .utf8).replacingOccurrences(of: "metric: sample-mse", with: "metric: velocity_mse")
    let recipe = dir.write("quickstart.yaml", text)
    let r = try CLI.run(["validate", recipe])
    #expect(r.status == 2 && r.stderr.contains("quickstart.yaml:") && r.stderr.contains("did you mean 'velocity-mse'?"), "\(r.stderr)")
}
