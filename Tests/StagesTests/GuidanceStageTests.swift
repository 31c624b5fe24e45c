// Classifier-free guidance in the score and evaluate stages: `sampling.guidance > 1` on an SD3 model uses the
// dataset's negative (empty-prompt) embedding — the stage's samples equal the guided sampler's on the same noise —
// and without one the stage fails with a located error naming the scripts that write it.

import CPUBackend
import Compression
import TensorFiles
import Foundation
import ModelSpec
import Models
import Scheduler
@testable import Stages
import TestSupport
import Testing

/// `writeDataset` plus one negative embedding row [1, 5, 24] / [1, 12].
func writeGuidedDataset(_ dir: TemporaryDirectory, name: String = "guided.safetensors", n: Int = 3) throws -> String {
    func values(_ count: Int, _ salt: Int) -> [Float] { (0..<count).map { Float(sin(Double($0 * 7 + salt) * 0.37)) } }
    try SafetensorsWriter.write([
        TensorPayload(name: "encoder_hidden_states", shape: [n, 5, 24], floats: values(n * 5 * 24, 1)),
        TensorPayload(name: "pooled_projections", shape: [n, 12], floats: values(n * 12, 2)),
        TensorPayload(name: "negative_encoder_hidden_states", shape: [1, 5, 24], floats: values(5 * 24, 5).map { $0 * 0.5 }),
        TensorPayload(name: "negative_pooled_projections", shape: [1, 12], floats: values(12, 6)),
    ], to: dir.path + "/" + name)
    return name
}

@Suite struct GuidanceStageTests {
    static func yaml(_ teacher: String, _ data: String, guidance: Double, stage: String = "score") -> String {
        let s = stage == "score"
            ? "score: { kind: score, model: teacher, data: calib, batch: 2, components: [block], sampling: { steps: 2, guidance: \(guidance) } }"
            : "evaluate: { kind: evaluate, models: { a: teacher }, data: calib, metrics: [fidelity], sampling: { steps: 2, guidance: \(guidance) } }"
        return """
            recipe: 1
            name: g
            seed: 7
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data), format: safetensors } }
            stages:
              \(s)
            """
    }

    @Test func guidanceWithoutANegativeEmbeddingIsALocatedError() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let bare = try writeDataset(dir, j: 24, p: 12)
        for stage in ["score", "evaluate"] {
            let r = try #require(try await runRecipe(dir, Self.yaml(teacher, bare, guidance: 4.5, stage: stage)).result(stage))
            #expect(r.status == .failed)
            let m = r.error ?? ""
            #expect(m.contains("stage '\(stage)' (") && m.contains("r.yaml:") && m.contains("negative_encoder_hidden_states")
                    && m.contains("Examples/embed_prompts.py") && m.contains("calib.safetensors"), "\(m)")
        }
        // guidance 1 is no CFG (diffusers: guidance_scale > 1), so it needs no negative.
        #expect(try await runRecipe(dir, Self.yaml(teacher, bare, guidance: 1)).result("score")?.status == .ran)
    }

    @Test func guidedScoresUseTheNegativeEmbedding() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeGuidedDataset(dir)
        let gRun = try await runRecipe(dir, Self.yaml(teacher, data, guidance: 4.5))
        let guided = try scores(gRun)
        let run = try await runRecipe(dir, Self.yaml(teacher, data, guidance: 0))
        let plain = try scores(run)
        // Guided sampling runs the model twice per step: (reference + 2 blocks) × 2 steps × 2 batches × 2.
        #expect(metric(gRun.result("score"), "forward_passes") == Double(3 * 2 * 2 * 2))
        #expect(metric(run.result("score"), "forward_passes") == Double(3 * 2 * 2))

        // ΔP of blocks.0 by hand: MSE of the guided samples with and without the block, same noise and negative.
        let be = CPUBackend()
        let cfg = try ModelConfig.load(path: dir.path + "/teacher/config.json")
        let model = try loadTransformer(path: dir.path + "/teacher", backend: be)
        let ds = try PromptDataset.open(path: dir.path + "/" + data, source: data)
        let shape = Array(try ds.latentShape(for: cfg, batch: 1).dropFirst())
        let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.init(shift: 3)), steps: 2, guidanceScale: 4.5)
        let removal = try Removal(parsing: ["blocks.0"], in: ModelStructure(cfg))
        var total = 0.0
        for range in ds.batches(size: 2) {
            let noise = try PromptDataset.noise(range, sampleShape: shape, seed: 7, backend: be)
            let cond = try ds.conditioning(range, backend: be), uncond = try #require(try ds.negativeConditioning(range, backend: be))
            let a = try be.floats(try sampler.sample(model, from: noise, cond: cond, uncond: uncond))
            let b = try be.floats(try sampler.sample(model, from: noise, cond: cond, uncond: uncond, removing: removal))
            let per = a.count / range.count
            for i in 0..<range.count {
                total += FidelityMetrics(Array(b[(i * per)..<((i + 1) * per)]), Array(a[(i * per)..<((i + 1) * per)])).mse
            }
        }
        let want = total / Double(ds.count)
        let got = try #require(guided.entries.first { $0.address == "blocks.0" }?.deltaP)
        #expect(abs(got - want) <= 1e-4 * want, "\(got) vs \(want)")
        let unguided = try #require(plain.entries.first { $0.address == "blocks.0" }?.deltaP)
        #expect(abs(got - unguided) > 1e-3 * want)

        // evaluate samples with the same guidance: the model against itself is identical.
        let ev = try #require(try await runRecipe(dir, Self.yaml(teacher, data, guidance: 4.5, stage: "evaluate")).result("evaluate"))
        #expect(ev.status == .ran, "\(ev.error ?? "")")
    }

    @Test func negativeEmbeddingShapesAreChecked() throws {
        let dir = TemporaryDirectory()
        try SafetensorsWriter.write([
            TensorPayload(name: "encoder_hidden_states", shape: [2, 5, 24], floats: [Float](repeating: 0, count: 240)),
            TensorPayload(name: "pooled_projections", shape: [2, 12], floats: [Float](repeating: 0, count: 24)),
            TensorPayload(name: "negative_encoder_hidden_states", shape: [1, 4, 24], floats: [Float](repeating: 0, count: 96)),
            TensorPayload(name: "negative_pooled_projections", shape: [1, 12], floats: [Float](repeating: 0, count: 12)),
        ], to: dir.path + "/bad.safetensors")
        #expect(throws: DatasetError.self) { try PromptDataset.open(path: dir.path + "/bad.safetensors", source: "bad.safetensors") }
        do { _ = try PromptDataset.open(path: dir.path + "/bad.safetensors", source: "bad.safetensors") } catch {
            #expect("\(error)".contains("[1, 4, 24]") && "\(error)".contains("[1, 5, 24]"), "\(error)")
        }
    }
}
