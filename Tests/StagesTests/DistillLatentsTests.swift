// `distill`'s `x0` option: the paper recipes' `x0: latents` refuses a dataset without VAE latents with a located
// error naming the script that writes them; `latents` trains exactly as the default does on a dataset with latents,
// and `noise` ignores them (so it trains differently).

import Foundation
import ModelStore
import Scheduler
import Stages
import TestSupport
import Testing

@Suite struct DistillLatentsTests {
    static func recipe(_ teacher: String, _ data: String, x0: String?) -> String {
        """
        recipe: 1
        name: x
        seed: 0
        models: { teacher: { path: \(teacher) } }
        datasets: { calib: { path: \(data) } }
        stages:
          prune: { kind: prune, model: teacher, remove: "0" }
          distill:
            kind: distill
            student: prune
            teacher: teacher
            data: calib
            steps: 2
            batch: 2\(x0.map { "\n    x0: \($0)" } ?? "")
        """
    }

    @Test func latentsRequiredNamesTheScriptAndTheStage() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let bare = try writeDataset(dir, name: "prompts.safetensors", n: 2, j: 24, p: 12)
        let run = try await runRecipe(dir, Self.recipe(teacher, bare, x0: "latents"))
        let r = try #require(run.result("distill"))
        #expect(r.status == .failed)
        let msg = r.error ?? ""
        #expect(msg.contains("stage 'distill' (") && msg.contains("r.yaml:") && msg.contains("prompts.safetensors")
                && msg.contains("no 'latents'") && msg.contains("Examples/encode_dataset.py"), "\(msg)")
        // Without `x0` the same dataset distils on noise (the old behaviour, kept for quick recipes).
        let auto = try await runRecipe(dir, Self.recipe(teacher, bare, x0: nil))
        #expect(auto.result("distill")?.status == .ran, "\(auto.result("distill")?.error ?? "")")
    }

    @Test func latentsMatchTheDefaultAndNoiseIgnoresThem() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeTrainingData(dir)
        func trained(_ x0: String?) async throws -> [String: String] {
            let run = try await runRecipe(dir, Self.recipe(teacher, data, x0: x0))
            let r = try #require(run.result("distill"))
            #expect(r.status == .ran, "\(r.error ?? "")")
            return try run.model("distill").tensors.mapValues { $0.object.digest.hex }
        }
        let auto = try await trained(nil), latents = try await trained("latents"), noise = try await trained("noise")
        let q = "transformer_blocks.1.attn.to_q.weight"   // block 1 trains (SGDistill binary: from the first removed block on)
        #expect(auto == latents)
        #expect(auto[q] != nil && auto[q] != noise[q])
    }
}
