// `score` through real recipes on the tiny fixture models with a calibration dataset written here: ΔP for every
// block and requested component, position weights, resume after an interruption (forward passes counted),
// the other metrics and methods, external scores, and bad input.

import ArtifactStore
import TensorFiles
import Compression
import Foundation
import ModelSpec
import Scheduler
import Stages
import TestSupport
import Testing

/// Writes a calibration dataset for a model with joint width `j` and pooled width `p` (deterministic values).
func writeDataset(_ dir: TemporaryDirectory, name: String = "calib.safetensors", n: Int = 3, tokens: Int = 5, j: Int, p: Int,
                  latents: [Int]? = nil, labels: Bool = false, metadata: [String: String]? = nil) throws -> String {
    func values(_ count: Int, _ salt: Int) -> [Float] { (0..<count).map { Float(sin(Double($0 * 7 + salt) * 0.37)) } }
    var t = [TensorPayload(name: "encoder_hidden_states", shape: [n, tokens, j], floats: values(n * tokens * j, 1)),
             TensorPayload(name: "pooled_projections", shape: [n, p], floats: values(n * p, 2))]
    if let latents { t.append(TensorPayload(name: "latents", shape: [n] + latents, floats: values(n * latents.reduce(1, *), 3))) }
    if labels {
        var d = Data()
        for i in 0..<n { withUnsafeBytes(of: Int64(i % 2).littleEndian) { d.append(contentsOf: $0) } }
        t.append(TensorPayload(name: "labels", dtype: .i64, shape: [n], data: d))
    }
    let path = dir.path + "/" + name
    try SafetensorsWriter.write(t, metadata: metadata, to: path)
    return name
}

func metric(_ r: StageResult?, _ name: String) -> Double? { r?.metrics.first { $0.name == name }?.value }

func scores(_ run: RecipeRun, _ stage: String = "score") throws -> Sensitivity {
    let r = try #require(run.result(stage))
    #expect(r.status == .ran, "\(r.error ?? "")")
    return try Sensitivity.decode(try run.store.data(try #require(r.outputs["scores"])), source: "test")
}

@Suite struct ScoreStageTests {
    static func sd3Recipe(_ teacher: String, _ data: String, _ extra: String) -> String {
        """
        recipe: 1
        name: s
        seed: 7
        models: { teacher: { path: \(teacher) } }
        datasets: { calib: { path: \(data), format: safetensors } }
        stages:
          score: { kind: score, model: teacher, data: calib, batch: 2, sampling: { steps: 2 }\(extra) }
        """
    }

    @Test func removeScoresEveryBlockAndComponent() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12)
        let run = try await runRecipe(dir, Self.sd3Recipe(teacher, data, ", components: [block, attn, ff, ff_context]"))
        let s = try scores(run)
        #expect(s.metric == "sample-mse" && s.blockCount == 2)
        // sd3_tiny: block 1 is context_pre_only (no ff_context): 2 blocks + 2 attn + 2 ff + 1 ff_context.
        let scored = s.entries.filter { $0.deltaP != nil }
        #expect(Set(scored.map(\.address)) == ["blocks.0", "blocks.1", "blocks.0.attn", "blocks.1.attn", "blocks.0.ff", "blocks.1.ff", "blocks.0.ff_context"])
        for e in scored {
            #expect(e.eligible && (e.deltaP ?? -1) > 0, "\(e.address): \(e.deltaP ?? .nan)")
            #expect(abs(e.wPos - exp(-Double(Int(e.address.split(separator: ".")[1])! - 2) / 2)) < 1e-12)   // default rate −1
        }
        // Reference (1) + 7 removals, 2 steps each, 2 batches (3 samples, batch 2).
        #expect(metric(run.result("score"), "forward_passes") == Double((1 + 7) * 2 * 2))
        #expect(metric(run.result("score"), "components_computed") == 7)

        // Position weighting off: same ΔP, W_pos = 1.
        let flat = try await runRecipe(dir, Self.sd3Recipe(teacher, data, ", components: [block, attn, ff, ff_context], position_weight: { form: none }"))
        let f = try scores(flat)
        #expect(f.entries.allSatisfy { $0.wPos == 1 })
        #expect(f.entries.map(\.deltaP) == s.entries.map(\.deltaP))
        // Only the position weight changed, so every component was kept: nothing ran the model.
        #expect(metric(flat.result("score"), "forward_passes") == 0)
        #expect(metric(flat.result("score"), "components_resumed") == 7)
    }

    @Test func prunedInputSkipsWhatIsGone() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, n: 1, j: 24, p: 12)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: p
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              prune: { kind: prune, model: teacher, remove: "blocks.0.ff,blocks.1.norm1" }
              score: { kind: score, model: prune, data: calib, sampling: { steps: 1 }, components: [block, ff, w_norm1, attn] }
            """)
        let s = try scores(run)
        #expect(Set(s.entries.filter { $0.deltaP != nil }.map(\.address)) == ["blocks.0", "blocks.1", "blocks.1.ff", "blocks.0.w_norm1", "blocks.0.attn", "blocks.1.attn"])
    }

    @Test func resumesAfterAnInterruption() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12)
        let yaml = Self.sd3Recipe(teacher, data, ", components: [block, attn, ff]")
        let first = try await runRecipe(dir, yaml, replacing: [ScoreStage(interruptAfter: 2)])
        #expect(first.result("score")?.status != .ran)
        let second = try await runRecipe(dir, yaml)
        let s = try scores(second)
        #expect(s.entries.filter { $0.deltaP != nil }.count == 6)
        #expect(metric(second.result("score"), "components_resumed") == 2)
        #expect(metric(second.result("score"), "components_computed") == 4)
        // The reference samples were kept too: only the 4 missing removals ran (2 steps × 2 batches each).
        #expect(metric(second.result("score"), "forward_passes") == Double(4 * 2 * 2))

        // Same values as an uninterrupted run in a fresh store.
        let other = TemporaryDirectory()
        _ = try copyModel("sd3_tiny", into: other)
        _ = try writeDataset(other, j: 24, p: 12)
        let fresh = try scores(try await runRecipe(other, yaml))
        #expect(fresh.entries.map(\.deltaP) == s.entries.map(\.deltaP))
    }

    @Test func otherMetricsAndCosineMethodOnFlux() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("flux_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12, metadata: ["latent_height": "2", "latent_width": "3"])
        let run = try await runRecipe(dir, """
            recipe: 1
            name: f
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              vel: { kind: score, model: teacher, data: calib, metric: velocity-mse, components: [block, proj_mlp_out], velocity: { sigmas: [0.5] } }
              psnr: { kind: score, model: teacher, data: calib, metric: psnr, sampling: { steps: 1, guidance: 3.5 } }
              cos: { kind: score, model: teacher, data: calib, metric: cosine, sampling: { steps: 1 } }
              koala: { kind: score, model: teacher, data: calib, method: cosine, velocity: { sigmas: [0.5] } }
            """)
        let vel = try scores(run, "vel")
        #expect(Set(vel.entries.filter { $0.deltaP != nil }.map(\.address)) == ["blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.2.proj_mlp_out", "blocks.3.proj_mlp_out"])
        for name in ["psnr", "cos"] {
            let s = try scores(run, name)
            #expect(s.entries.filter { $0.address.split(separator: ".").count == 2 }.allSatisfy { ($0.deltaP ?? -1) >= 0 }, "\(name)")
        }
        let psnr = try scores(run, "psnr")
        #expect(psnr.entries.compactMap(\.deltaP).allSatisfy { $0 > 0 && $0 < 100 })
        let koala = try scores(run, "koala")
        #expect(koala.metric == "cosine-similarity")
        #expect(koala.entries.first { $0.address == "blocks.0" }?.eligible == false)
        #expect(koala.entries.filter { $0.address != "blocks.0" && !$0.address.contains("_") && $0.address.split(separator: ".").count == 2 }
                    .allSatisfy { ($0.deltaP ?? -1) >= 0 && ($0.deltaP ?? 3) <= 2 })
    }

    @Test func taylorAndAdditiveBaselines() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12, latents: [4, 8, 8])
        let run = try await runRecipe(dir, """
            recipe: 1
            name: t
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              taylor: { kind: score, model: teacher, data: calib, method: taylor, components: [block, attn, ff], taylor: { timesteps: 3 } }
              additive: { kind: score, model: teacher, data: calib, method: additive, components: [block, ff], velocity: { sigmas: [0.5] } }
              remove: { kind: score, model: teacher, data: calib, metric: velocity-mse, components: [block, ff], velocity: { sigmas: [0.5] } }
            """)
        let t = try scores(run, "taylor")
        #expect(t.metric == "taylor")
        func d(_ s: Sensitivity, _ a: String) -> Double { s.entries.first { $0.address == a }?.deltaP ?? .nan }
        for b in 0..<2 {
            #expect(d(t, "blocks.\(b).attn") > 0 && d(t, "blocks.\(b).ff") > 0)
            // The whole block owns the attention and FF tensors (and its norms).
            #expect(d(t, "blocks.\(b)") >= d(t, "blocks.\(b).attn") + d(t, "blocks.\(b).ff"))
        }
        let steps = try #require(metric(run.result("taylor"), "taylor_timesteps"))
        #expect(steps >= 1 && steps <= 3)
        // LAPTOP's one-shot output loss is the single-removal velocity MSE.
        let a = try scores(run, "additive"), r = try scores(run, "remove")
        #expect(a.metric == "additive")
        #expect(a.entries.map(\.deltaP) == r.entries.map(\.deltaP))
        #expect(a.entries.compactMap(\.deltaP).count == 4)
    }

    @Test func externalScoresFromACommand() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: e
            models: { teacher: { path: \(teacher) } }
            stages:
              hps: { kind: command, run: [sh, -c, 'echo "{\\"baseline\\": 30, \\"scores\\": {\\"blocks.0\\": 12.5, \\"blocks.1\\": 29}}" > "$HPRUNE_OUT/scores.json"'], outputs: [scores.json] }
              score: { kind: score, model: teacher, metric: external, external: hps.scores.json }
            """)
        let s = try scores(run)
        #expect(s.baseline == 30)
        #expect(s.entries.first { $0.address == "blocks.0" }?.deltaP == 17.5)
        #expect(s.entries.first { $0.address == "blocks.1" }?.deltaP == 1)
    }

    @Test func componentThatMatchesNothingNamesTheStage() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeDataset(dir, j: 24, p: 12)
        let run = try await runRecipe(dir, Self.sd3Recipe(teacher, data, ", components: [block, proj_mlp_out]"))
        let r = try #require(run.result("score"))
        #expect(r.status == .failed)
        let msg = r.error ?? ""
        #expect(msg.contains("stage 'score' (") && msg.contains("r.yaml:") && msg.contains("proj_mlp_out") && msg.contains("matches no block"), "\(msg)")

        // A dataset of the wrong width: named, with the model's width.
        let bad = try writeDataset(dir, name: "wide.safetensors", j: 30, p: 12)
        let run2 = try await runRecipe(dir, Self.sd3Recipe(teacher, bad, ""))
        let msg2 = run2.result("score")?.error ?? ""
        #expect(msg2.contains("stage 'score' (") && msg2.contains("joint_attention_dim 24") && msg2.contains("wide.safetensors"), "\(msg2)")
    }
}
