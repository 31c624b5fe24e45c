// distill and train as stages of real recipes (temp store, real fixture models, a dataset written here):
// the loss falls, PWP-frozen tensors keep the teacher's objects, SGDistill multipliers are recorded, a killed
// distill resumes from its checkpoint (and ends bit-identical to an uninterrupted run), a NaN loss stops with the
// step and keeps the last good checkpoint, and train fits a randomly initialised model.

import ArtifactStore
import TensorFiles
import Compression
import Foundation
import ModelSpec
import ModelStore
import Scheduler
import StageGraph
import Stages
import TestSupport
import Testing

/// A dataset for the tiny SD3 fixtures (J 24, P 12, latents 4×8×8): N samples, optional NaN at one latent.
func writeTrainingData(_ dir: TemporaryDirectory, name: String = "data.safetensors", count n: Int = 4, nanInSample: Int? = nil) throws -> String {
    func values(_ count: Int, _ salt: Float) -> [Float] { (0..<count).map { sin(Float($0) * 0.731 + salt) } }
    var latents = values(n * 4 * 8 * 8, 0.3).map { $0 * 0.8 }
    if let s = nanInSample { latents[s * 256 + 17] = .nan }
    let path = dir.path + "/" + name
    try SafetensorsWriter.write([
        TensorPayload(name: "encoder_hidden_states", shape: [n, 3, 24], floats: values(n * 3 * 24, 1.1)),
        TensorPayload(name: "pooled_projections", shape: [n, 12], floats: values(n * 12, 2.2)),
        TensorPayload(name: "latents", shape: [n, 4, 8, 8], floats: latents),
    ], to: path)
    try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: path)
    return name
}

func distillRecipe(teacher: String, data: String, steps: Int, every: Int, lr: Double = 3e-3) -> String {
    """
    recipe: 1
    name: d
    seed: 0
    models: { teacher: { path: \(teacher), format: diffusers } }
    datasets: { calib: { path: \(data) } }
    stages:
      prune: { kind: prune, model: teacher, remove: "1" }
      freeze: { kind: freeze, model: prune }
      distill:
        kind: distill
        student: freeze
        teacher: teacher
        data: calib
        loss: { output: 1.0, feature: 0.1 }
        sensitivity: { form: binary, threshold: 0.25 }
        optimizer: { adamw: { lr: \(lr) } }
        steps: \(steps)
        batch: 2
        checkpoint_every: \(every)
    """
}

final class Box<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T {
        get { lock.withLock { v } }
        set { lock.withLock { v = newValue } }
    }
}


@Suite struct TrainingStageTests {
    @Test func distillLowersTheLossKeepsFrozenObjectsAndRecordsSGDistill() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd35_tiny", into: dir)
        let data = try writeTrainingData(dir)
        let run = try await runRecipe(dir, distillRecipe(teacher: teacher, data: data, steps: 16, every: 8))
        let d = try #require(run.result("distill"))
        #expect(d.status == .ran, "\(d.error ?? "") \(d.log ?? "")")
        let first = try #require(metric(d, "loss_first10_mean")), last = try #require(metric(d, "loss_last10_mean"))
        #expect(last < first, "\(first) → \(last)")

        let student = try run.model("distill"), frozen = try run.model("freeze")
        #expect(student.structure.frozenBlocks == [0] && student.structure.removed == ["blocks.1"])
        for (name, t) in frozen.tensors {
            let same = student.tensors[name]?.object.digest == t.object.digest
            if name.hasPrefix("transformer_blocks.0.") || name.hasPrefix("pos_embed.") || name.hasPrefix("time_text_embed.")
                || name.hasPrefix("context_embedder.") {
                #expect(same, "frozen \(name) got a new object")
            } else if name.hasSuffix(".weight") && (name.hasPrefix("transformer_blocks.2.") || name.hasPrefix("proj_out.")) {
                #expect(!same, "trained \(name) kept its object")
            }
        }
        let sg = try #require(student.structure.sgdistill)
        #expect(sg.form == "binary" && sg.threshold == 0.25 && sg.compressionRatio > 0.25)
        #expect(sg.multipliers == [0, 0, 1])
    }

    @Test func inverseSGDistillFromScores() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd35_tiny", into: dir)
        let data = try writeTrainingData(dir)
        let s = ModelStructure(try ModelConfig.load(path: dir.path + "/\(teacher)/config.json"))
        let deltas: [ComponentAddress: Double] = [ComponentAddress(block: 0, component: .block): 0.2,
                                                  ComponentAddress(block: 1, component: .block): 0.01,
                                                  ComponentAddress(block: 2, component: .block): -0.05]
        _ = dir.write("scores.json", String(decoding: try Sensitivity(deltas: deltas, structure: s, positionWeight: PositionWeight(form: .none),
                                                                      metric: "test").encoded(), as: UTF8.self))
        let run = try await runRecipe(dir, """
            recipe: 1
            name: d
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data) } }
            stages:
              score: { kind: test-scores, path: scores.json }
              prune: { kind: prune, model: teacher, remove: "1" }
              distill: { kind: distill, student: prune, teacher: teacher, scores: score, data: calib, steps: 2, batch: 1,
                         loss: { form: laptop }, sensitivity: { threshold: 0.1 } }
            """)
        let d = try #require(run.result("distill"))
        #expect(d.status == .ran, "\(d.error ?? "")")
        // Block 2's ΔP −0.05 (its removal helps) is floored at ε·max ΔP = 0.002: raw 1/0.2 = 5 and 1/0.002 = 500 for
        // blocks 0 and 2, normalised to mean 1: 5/252.5 and 500/252.5 (under the cap 4); the removed block 1 gets 0.
        let sg = try #require(try run.model("distill").structure.sgdistill)
        #expect(sg.form == "inverse")
        let m = try #require(sg.multipliers)
        #expect(m.count == 3 && abs(m[0] - 5 / 252.5) < 1e-12 && m[1] == 0 && abs(m[2] - 500 / 252.5) < 1e-12, "\(m)")
        #expect(sg.components == nil)   // block-only scores: no per-component multipliers
        let before = try run.model("prune"), after = try run.model("distill")
        #expect(before.tensors["transformer_blocks.0.attn.to_q.weight"] != after.tensors["transformer_blocks.0.attn.to_q.weight"])
        #expect(before.tensors["pos_embed.pos_embed"] == after.tensors["pos_embed.pos_embed"])
    }

    @Test func componentSGDistillFromComponentScores() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd35_tiny", into: dir)
        let data = try writeTrainingData(dir)
        let s = ModelStructure(try ModelConfig.load(path: dir.path + "/\(teacher)/config.json"))
        // Block 2 is the last SD3 block (no ff_context). Units: 0.attn 0.2, 0.ff 0.05, 2.attn 0.1, 2.ff −0.01 (floored
        // at ε·0.2 = 0.002): raw 5, 20, 10, 500, mean 133.75; the blocks' other parameters 1/0.4 and 1/0.3.
        let deltas: [ComponentAddress: Double] = [
            ComponentAddress(block: 0, component: .block): 0.4, ComponentAddress(block: 0, component: .attn): 0.2,
            ComponentAddress(block: 0, component: .ff): 0.05, ComponentAddress(block: 1, component: .block): 0.01,
            ComponentAddress(block: 2, component: .block): 0.3, ComponentAddress(block: 2, component: .attn): 0.1,
            ComponentAddress(block: 2, component: .ff): -0.01]
        _ = dir.write("scores.json", String(decoding: try Sensitivity(deltas: deltas, structure: s, positionWeight: PositionWeight(form: .none),
                                                                      metric: "test").encoded(), as: UTF8.self))
        let run = try await runRecipe(dir, """
            recipe: 1
            name: d
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data) } }
            stages:
              score: { kind: test-scores, path: scores.json }
              prune: { kind: prune, model: teacher, remove: "1" }
              distill: { kind: distill, student: prune, teacher: teacher, scores: score, data: calib, steps: 2, batch: 1,
                         sensitivity: { threshold: 0.1 } }
            """)
        let d = try #require(run.result("distill"))
        #expect(d.status == .ran, "\(d.error ?? "")")
        let sg = try #require(try run.model("distill").structure.sgdistill)
        let mean = 535.0 / 4
        let want = ["blocks.0.attn": 5 / mean, "blocks.0.ff": 20 / mean, "blocks.2.attn": 10 / mean, "blocks.2.ff": 500 / mean]
        let got = try #require(sg.components)
        #expect(got.keys.sorted() == want.keys.sorted(), "\(got)")
        for (k, v) in want { #expect(abs((got[k] ?? 0) - v) < 1e-12, "\(k): \(got[k] ?? 0) vs \(v)") }
        let m = try #require(sg.multipliers)
        #expect(m.count == 3 && abs(m[0] - 2.5 / mean) < 1e-12 && m[1] == 0 && abs(m[2] - (1 / 0.3) / mean) < 1e-12, "\(m)")
        // The ledger has them as metrics, and the log has the loss curve of the two steps.
        for (k, v) in want { #expect(abs((metric(d, "sgdistill.\(k)") ?? 0) - v) < 1e-12, "\(k)") }
        #expect(abs((metric(d, "sgdistill.blocks.0") ?? 0) - 2.5 / mean) < 1e-12 && metric(d, "sgdistill.blocks.1") == nil)
        let curve = try #require(HTMLReport.parseLossCurve(d.log ?? ""))
        #expect(curve.every == 1 && curve.points.map(\.step) == [1, 2], "\(d.log ?? "")")
    }

    @Test func aKilledDistillResumesFromItsCheckpoint() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd35_tiny", into: dir)
        let data = try writeTrainingData(dir)
        let yaml = distillRecipe(teacher: teacher, data: data, steps: 10, every: 2)
        let root = URL(fileURLWithPath: dir.path + "/.hprune").standardizedFileURL.path

        // First run: interrupted after 5 completed steps (the checkpoint at 4 is the last one).
        let task = Box<Task<RecipeRun, any Error>?>(nil)
        let seen = Box<[Int]>([])
        let token = TrainingObserver.add { store, stage, step in
            guard store.standardizedFileURL.path == root, stage == "distill" else { return }
            seen.value.append(step)
            if step == 5 { task.value?.cancel() }
        }
        defer { TrainingObserver.remove(token) }
        let t = Task { try await runRecipe(dir, yaml) }
        task.value = t
        let first = try await t.value
        #expect(first.result("distill")?.status == .cancelled)
        #expect(seen.value == [1, 2, 3, 4, 5])

        // Second run: starts at step 4, runs steps 5…10 only.
        seen.value = []
        let second = try await runRecipe(dir, yaml)
        let d = try #require(second.result("distill"))
        #expect(d.status == .ran, "\(d.error ?? "")")
        #expect(seen.value == [5, 6, 7, 8, 9, 10])
        #expect(metric(d, "resumed_from_step") == 4 && metric(d, "steps_run") == 6)

        // The resumed result is bit-identical to an uninterrupted run.
        let other = TemporaryDirectory()
        _ = try copyModel("sd35_tiny", into: other)
        _ = try writeTrainingData(other)
        let straight = try await runRecipe(other, yaml)
        #expect(metric(straight.result("distill"), "resumed_from_step") == 0)
        #expect(try straight.model("distill") == second.model("distill"))

        // Only the newest checkpoint is kept: the 5 saves of the straight run leave one checkpoint object.
        let store = try ArtifactStore(root: URL(fileURLWithPath: other.path + "/.hprune"))
        let checkpoints = try store.list().filter { info in
            guard let data = try? store.data(info.digest), data.count > 8 else { return false }
            return String(decoding: data.prefix(4096), as: UTF8.self).contains("\"action_key\"")
        }
        #expect(checkpoints.count == 1, "\(checkpoints.count) checkpoint objects")
    }

    @Test func aNaNLossStopsNamingTheStepAndKeepsTheLastCheckpoint() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd35_tiny", into: dir)
        // batch 2 over 4 samples: step 0 uses samples 0, 1; step 1 uses 2, 3 (NaN); … checkpoint every step.
        let data = try writeTrainingData(dir, nanInSample: 3)
        let yaml = distillRecipe(teacher: teacher, data: data, steps: 6, every: 1).replacingOccurrences(of: "batch: 2", with: "batch: 1")
        let run = try await runRecipe(dir, yaml)
        let d = try #require(run.result("distill"))
        #expect(d.status == .failed)
        let msg = d.error ?? ""
        #expect(msg.contains("stage 'distill' (") && msg.contains("r.yaml:"), "\(msg)")
        #expect(msg.contains("at step 4") && msg.contains("after step 3"), "\(msg)")
        let key = try #require(d.key)
        let ckpt = try #require(run.store.partial(namespace: key, name: "checkpoint"))
        #expect(ckpt.extra["step"] == "3" && ckpt.owner == key)
        #expect(run.store.contains(ckpt.digest))
    }

    @Test func trainFitsARandomlyInitialisedModel() async throws {
        let dir = TemporaryDirectory()
        try FileManager.default.copyItem(atPath: fixtures + "/models/sd3_tiny/config.json", toPath: dir.path + "/config.json")
        let data = try writeTrainingData(dir)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: t
            seed: 1
            datasets: { calib: { path: \(data) } }
            stages:
              train:
                kind: train
                init: { config: config.json, seed: 3 }
                data: calib
                optimizer: { adamw: { lr: 3.0e-3 } }
                schedule: cosine
                warmup_steps: 2
                steps: 30
                batch: 2
                checkpoint_every: 10
            """)
        let t = try #require(run.result("train"))
        #expect(t.status == .ran, "\(t.error ?? "")")
        let first = try #require(metric(t, "loss_first10_mean")), last = try #require(metric(t, "loss_last10_mean"))
        #expect(last < first, "\(first) → \(last)")
        let m = try run.model("train")
        #expect(m.architecture == "SD3Transformer2DModel" && m.tensors.count > 20)
        #expect(m.tensors["pos_embed.pos_embed"] != nil && m.tensors["proj_out.weight"]?.object.dtype == .f32)
    }

    @Test func badTrainingRecipesAreRejectedAtCheckTime() throws {
        let dir = TemporaryDirectory()
        let data = try writeTrainingData(dir)
        func problems(_ stages: String) -> String {
            let yaml = "recipe: 1\nname: t\nmodels: { teacher: { path: m } }\ndatasets: { calib: { path: \(data) } }\nstages:\n" + stages
            do {
                _ = try Workspace.load(path: dir.write("r.yaml", yaml), environment: [:], registry: StageKinds.registry)
                return ""
            } catch { return "\(error)" }
        }
        #expect(problems("  train: { kind: train, data: calib }").contains("missing 'model' or 'init'"))
        #expect(problems("  train: { kind: train, data: calib, model: teacher, init: { config: c.json } }").contains("not both"))
        #expect(problems("  d: { kind: distill, student: teacher, teacher: teacher, data: calib, sensitivity: { form: inverse } }")
            .contains("needs 'scores'"))
        #expect(problems("  d: { kind: distill, student: teacher, teacher: teacher, data: calib, steps: 5, warmup_steps: 9 }")
            .contains("'warmup_steps' (9) is more than 'steps' (5)"))
        #expect(problems("  d: { kind: distill, student: teacher, teacher: teacher, data: calib, loss: { form: koala } }").contains("form"))
        #expect(problems("  d: { kind: distill, student: teacher, teacher: teacher, data: calib, optimizer: { adamw: { lr: 1.0e-4, betas: [0.9] } } }")
            .contains("betas"))
    }

    @Test func everyKindEndToEndFromATrainedTeacher() async throws {
        let dir = TemporaryDirectory()
        try FileManager.default.copyItem(atPath: fixtures + "/models/sd35_tiny/config.json", toPath: dir.path + "/config.json")
        let data = try writeTrainingData(dir)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: all
            seed: 0
            datasets: { calib: { path: \(data) } }
            stages:
              teacher: { kind: train, init: { config: config.json }, data: calib, steps: 6, batch: 2, optimizer: { adamw: { lr: 1.0e-3 } } }
              score: { kind: score, model: teacher, data: calib, batch: 2, sampling: { steps: 2 } }
              prune: { kind: prune, model: teacher, scores: score, target: { params: 0.3 }, protect_first: 1 }
              freeze: { kind: freeze, model: prune }
              distill: { kind: distill, student: freeze, teacher: teacher, scores: score, data: calib, steps: 4, batch: 2,
                         checkpoint_every: 2, sensitivity: { threshold: 0.1 } }
              quantise: { kind: quantise, model: distill, format: nf4 }
              evaluate: { kind: evaluate, models: { original: teacher, compressed: quantise }, data: calib, metrics: [memory, fidelity],
                          batch: 2, sampling: { steps: 2 } }
            """)
        #expect(run.results.allSatisfy { $0.status == .ran }, "\(run.results.map { "\($0.name): \($0.status) \($0.error ?? "")" })")
        let sg = try #require(try run.model("distill").structure.sgdistill)
        #expect(sg.form == "inverse" && sg.multipliers != nil)
        let e = run.result("evaluate")
        #expect((metric(e, "compressed.weight_bytes") ?? .infinity) < (metric(e, "original.weight_bytes") ?? 0))
    }

    @Test func trainContinuesAModelAndKeepsItsFrozenBlocks() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let data = try writeTrainingData(dir)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: t
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(data) } }
            stages:
              freeze: { kind: freeze, model: teacher, policy: blocks, blocks: "0-1" }
              train: { kind: train, model: freeze, data: calib, steps: 3, batch: 2, grad_clip: 0, schedule: linear }
            """)
        #expect(run.result("train")?.status == .ran, "\(run.result("train")?.error ?? "")")
        let before = try run.model("freeze"), after = try run.model("train")
        #expect(after.structure.frozenBlocks == [0])
        for (n, t) in before.tensors where n.hasPrefix("transformer_blocks.0.") { #expect(after.tensors[n] == t, "\(n)") }
        #expect(after.tensors["transformer_blocks.1.attn.to_q.weight"] != before.tensors["transformer_blocks.1.attn.to_q.weight"])
        #expect(after.tensors["pos_embed.pos_embed"] == before.tensors["pos_embed.pos_embed"])
    }
}
