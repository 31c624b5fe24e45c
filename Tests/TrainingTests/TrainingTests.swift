// The training loops' numerics on the tiny fixture models: flow-matching and distillation loss values against a
// hand computation, SGDistill update scaling (multiplier 0 and frozen blocks never change, the step size follows
// the multiplier), a step that lowers the loss, NaN detection, schedules, and exact resume from a saved state.

import CPUBackend
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing
@testable import Training

let modelFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../Fixtures/models").standardizedFileURL.path

/// A deterministic batch for an SD3 model: latents (B,C,8,8), text (B,3,J), pooled (B,P).
func batch(_ m: any DiffusionTransformer, b: Int = 2, seed: UInt64 = 7) throws -> TrainingBatch {
    guard case .sd3(let c) = m.structure.config else { throw TrainingError.mismatch("sd3 only") }
    let be = m.backend
    return TrainingBatch(latents: try be.randomNormal([b, c.inChannels, 8, 8], seed: seed, offset: 0),
                         encoderHiddenStates: try be.randomNormal([b, 3, c.jointAttentionDim], seed: seed, offset: 10_000),
                         pooledProjections: try be.randomNormal([b, c.pooledProjectionDim], seed: seed, offset: 20_000))
}

func mse(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) } / Double(a.count)
}

func load(_ name: String, removing: [String] = []) throws -> any DiffusionTransformer {
    try loadTransformer(path: modelFixtures + "/" + name, backend: CPUBackend(), removing: removing)
}

@Suite struct TrainingTests {
    @Test func flowMatchingLossMatchesAHandComputation() throws {
        let m = try load("sd3_tiny")
        let be = m.backend
        let bt = try batch(m)
        let random = TrainingRandom(seed: 3)
        let trainer = try Trainer(model: m, objective: .flowMatching,
                                  trainable: TrainableParameters(structure: m.structure, loaded: Set(m.weights.names)),
                                  settings: OptimizerSettings(), random: random, totalSteps: 1)
        let (loss, grads) = try trainer.lossAndGradients(bt, step: 5)
        // By hand: σ from the logit-normal draw, x_t = σ·noise + (1−σ)·x0, v = noise − x0, MSE(model(x_t), v).
        let sig = random.sigmas(step: 5, count: 2)
        #expect(sig.allSatisfy { $0 > 0 && $0 <= 1 } && sig[0] != sig[1])
        let x0 = try be.floats(bt.latents)
        let noise = try be.floats(try be.randomNormal(bt.latents.shape, seed: random.noiseSeed(step: 5), offset: 0))
        let per = x0.count / 2
        var xt = [Float](), v = [Float]()
        for i in 0..<x0.count {
            let p = flowMatchNoisy(x0: x0[i], noise: noise[i], sigma: sig[i / per])
            xt.append(p.xt); v.append(p.target)
        }
        let out = try m.forward(TransformerInputs(hiddenStates: try be.tensor(xt, shape: bt.latents.shape),
                                                  encoderHiddenStates: bt.encoderHiddenStates, pooledProjections: bt.pooledProjections,
                                                  timestep: sig.map { $0 * 1000 }))
        let hand = mse(try be.floats(out), v)
        #expect(abs(loss.total - hand) <= 1e-5 * hand, "\(loss.total) vs \(hand)")
        #expect(!grads.isEmpty && grads.keys.allSatisfy { $0 != "pos_embed.pos_embed" })
    }

    @Test func logitNormalSigmasFollowTheDensity() {
        let r = TrainingRandom(seed: 0)
        let s = (0..<200).flatMap { r.sigmas(step: $0, count: 4) }
        let mean = s.reduce(0, +) / Float(s.count)
        #expect(abs(mean - 0.5) < 0.05)                          // logit-normal(0,1) is symmetric about 0.5
        #expect(s.filter { $0 < 0.1 || $0 > 0.9 }.count < s.count / 4)   // mass concentrated in the middle
        #expect(r.sigmas(step: 3, count: 4) == TrainingRandom(seed: 0).sigmas(step: 3, count: 4))
        #expect(r.sigmas(step: 3, count: 4) != r.sigmas(step: 4, count: 4))
    }

    @Test(arguments: [DistillationForm.hierarchicalprune, .bkSDM, .laptop])
    func distillationLossMatchesAHandComputation(_ form: DistillationForm) throws {
        let teacher = try load("sd35_tiny")
        let student = try load("sd35_tiny", removing: ["blocks.1"])
        let be = student.backend
        let loss = DistillationLoss(form: form, feature: 0.5)
        let trainer = try Trainer(model: student, objective: .distillation(teacher: teacher, loss: loss),
                                  trainable: TrainableParameters(structure: student.structure, loaded: Set(student.weights.names)),
                                  settings: OptimizerSettings(), random: TrainingRandom(seed: 1), totalSteps: 1)
        #expect(trainer.features.blocks == [0: true, 2: false])   // block 1 removed; block 2 is context_pre_only
        let bt = try batch(student)
        let (got, _) = try trainer.lossAndGradients(bt, step: 0)

        let d = try trainer.random.draw(bt.latents, step: 0, backend: be)
        let inp = trainer.inputs(bt, noisy: d.noisy, sigmas: d.sigmas)
        let s = try student.forwardTrace(inp, capture: [0, 2]), t = try teacher.forwardTrace(inp, capture: [0, 2])
        func f(_ x: Tensor) throws -> [Float] { try be.floats(x) }
        func feat(_ a: Tensor, _ b: Tensor) throws -> Double {
            let fb = try f(b)
            let norm = form == .laptop ? fb.reduce(0.0) { $0 + Double($1 * $1) } / Double(fb.count) : 1
            return mse(try f(a), fb) / norm
        }
        let out = mse(try f(s.output), try f(t.output))
        let feature = try feat(s.blocks[0]!.image, t.blocks[0]!.image) + feat(s.blocks[0]!.context, t.blocks[0]!.context)
            + feat(s.blocks[2]!.image, t.blocks[2]!.image)
        let task = mse(try f(s.output), try f(d.target))
        let w = form.defaultWeights
        let total = w.output * out + 0.5 * feature + w.task * task
        #expect(abs(got.output - out) <= 1e-5 * out)
        #expect(abs(got.feature - feature) <= 1e-5 * feature)
        #expect(abs(got.total - total) <= 1e-5 * total, "\(form): \(got.total) vs \(total)")
        #expect(out > 0 && feature > 0)
    }

    @Test func componentMultipliersOverrideTheirBlocksForTheTensorsTheyOwn() throws {
        let teacher = try load("sd35_tiny")
        let student = try load("sd35_tiny", removing: ["blocks.1.ff"])   // differs from the teacher: non-zero gradients
        let s = student.structure
        let attn = ComponentAddress(block: 2, component: .attn), ff = ComponentAddress(block: 2, component: .ff)
        let trainable = TrainableParameters(structure: s, loaded: Set(student.weights.names), blockMultipliers: [1, 1, 0.5],
                                            componentMultipliers: [attn: 0.25, ff: 2])
        let attnNames = Set(try s.tensorNames(of: attn)), ffNames = Set(try s.tensorNames(of: ff))
        #expect(!attnNames.isEmpty && !ffNames.isEmpty)
        for n in trainable.names where n.hasPrefix("transformer_blocks.2.") {
            let want = attnNames.contains(n) ? 0.25 : (ffNames.contains(n) ? 2 : 0.5)
            #expect(trainable.multipliers[n] == want, "\(n)")
        }
        #expect(trainable.multipliers["transformer_blocks.0.ff.net.0.proj.weight"] == 1)
        // The step follows the component's multiplier: Adam's first step moves by ≈ lr·m.
        let before = try student.backend.floats(try student.weights("transformer_blocks.2.attn.to_q.weight"))
        let lr = 1e-3
        let trainer = try Trainer(model: student, objective: .distillation(teacher: teacher, loss: DistillationLoss(feature: 1)),
                                  trainable: trainable, settings: OptimizerSettings(learningRate: lr, weightDecay: 0),
                                  random: TrainingRandom(seed: 2), totalSteps: 1)
        _ = try trainer.step(try batch(student), step: 0)
        let after = try student.backend.floats(try student.weights("transformer_blocks.2.attn.to_q.weight"))
        let moved = zip(after, before).map { Double(abs($0 - $1)) }.max() ?? 0
        #expect(abs(moved - 0.25 * lr) < 0.05 * lr, "\(moved)")
    }

    @Test func sgdistillScalesUpdatesAndFrozenBlocksNeverChange() throws {
        let teacher = try load("sd35_tiny")
        let student = try load("sd35_tiny", removing: ["blocks.1.ff"])
        let before = Dictionary(uniqueKeysWithValues: try student.weights.names.map { ($0, try student.backend.floats(try student.weights($0))) })
        // Block 0 frozen (PWP) with the embedders; block 1 multiplier 0 (SGDistill); block 2 multiplier 0.5.
        let trainable = TrainableParameters(structure: student.structure, loaded: Set(student.weights.names), frozenBlocks: [0],
                                            frozenPrefixes: ["pos_embed.", "time_text_embed.", "context_embedder."],
                                            blockMultipliers: [0, 0, 0.5])
        #expect(!trainable.names.contains { $0.hasPrefix("transformer_blocks.0.") || $0.hasPrefix("transformer_blocks.1.") || $0.hasPrefix("pos_embed.") })
        #expect(trainable.multipliers["transformer_blocks.2.attn.to_q.weight"] == 0.5 && trainable.multipliers["proj_out.weight"] == 1)
        let lr = 1e-3
        let trainer = try Trainer(model: student, objective: .distillation(teacher: teacher, loss: DistillationLoss(feature: 1)),
                                  trainable: trainable, settings: OptimizerSettings(learningRate: lr, weightDecay: 0),
                                  random: TrainingRandom(seed: 2), totalSteps: 1)
        _ = try trainer.step(try batch(student), step: 0)
        var maxDelta: [String: Float] = [:]
        for n in student.weights.names {
            let now = try student.backend.floats(try student.weights(n))
            let delta = zip(now, before[n]!).map { abs($0 - $1) }.max() ?? 0
            if trainable.contains(n) { maxDelta[n] = delta } else { #expect(delta == 0, "\(n) changed") }
        }
        #expect(trainer.optimizer.stateNames == trainable.names.filter { maxDelta[$0]! > 0 || true }.sorted())
        // Adam's first step moves each element by ≈ lr·m·sign(g): 5e-4 in block 2, 1e-3 in proj_out.
        let b2 = maxDelta["transformer_blocks.2.attn.to_q.weight"]!, out = maxDelta["proj_out.weight"]!
        #expect(abs(Double(b2) - 0.5 * lr) < 0.05 * lr, "\(b2)")
        #expect(abs(Double(out) - lr) < 0.05 * lr, "\(out)")
    }

    @Test func aStepLowersTheLossAndTrainingConverges() throws {
        let m = try load("sd3_tiny")
        let trainer = try Trainer(model: m, objective: .flowMatching,
                                  trainable: TrainableParameters(structure: m.structure, loaded: Set(m.weights.names)),
                                  settings: OptimizerSettings(learningRate: 3e-3), random: TrainingRandom(seed: 0), totalSteps: 30)
        let bt = try batch(m, b: 2)
        let stored = try m.backend.floats(try m.weights("proj_out.weight"))
        let l0 = try trainer.lossAndGradients(bt, step: 0).0.total
        _ = try trainer.step(bt, step: 0)
        let l1 = try trainer.lossAndGradients(bt, step: 0).0.total
        #expect(l1 < l0, "\(l0) → \(l1)")
        var losses: [Double] = []
        for s in 1..<30 { losses.append(try trainer.step(bt, step: s).loss.total) }
        let first = losses.prefix(5).reduce(0, +) / 5, last = losses.suffix(5).reduce(0, +) / 5
        #expect(last < first, "\(first) → \(last)")
        // Weights memory-mapped from the fixture were copied before the first update: the file is untouched.
        #expect(try m.backend.floats(try m.weights("proj_out.weight")) != stored)
        #expect(try CPUBackend().floats(try load("sd3_tiny").weights("proj_out.weight")) == stored)
    }

    @Test func nonFiniteLossStopsWithoutUpdating() throws {
        let m = try load("sd3_tiny")
        let trainer = try Trainer(model: m, objective: .flowMatching,
                                  trainable: TrainableParameters(structure: m.structure, loaded: Set(m.weights.names)),
                                  settings: OptimizerSettings(), random: TrainingRandom(seed: 0), totalSteps: 10)
        var bt = try batch(m)
        var x = try m.backend.floats(bt.latents)
        x[3] = .nan
        bt.latents = try m.backend.tensor(x, shape: bt.latents.shape)
        let w = try m.backend.floats(try m.weights("proj_out.weight"))
        #expect(throws: TrainingError.self) { try trainer.step(bt, step: 4) }
        do { _ = try trainer.step(bt, step: 4) } catch let e as TrainingError {
            guard case .nonFinite(let step, _, _) = e else { Issue.record("\(e)"); return }
            #expect(step == 4 && "\(e)".contains("step 5"))
        }
        #expect(try m.backend.floats(try m.weights("proj_out.weight")) == w)
        #expect(trainer.optimizer.stepCount == 0)

        // NaN weights are refused before training starts, naming the tensor.
        m.weights.set("proj_out.bias", try m.backend.tensor([Float](repeating: .nan, count: 16), shape: [16]))
        #expect(throws: ModelError.self) {
            _ = try Trainer(model: m, objective: .flowMatching,
                            trainable: TrainableParameters(structure: m.structure, loaded: Set(m.weights.names)),
                            settings: OptimizerSettings(), random: TrainingRandom(seed: 0), totalSteps: 1)
        }
    }

    @Test func schedules() {
        let c = LearningRateSchedule(.cosine, warmupSteps: 2)
        #expect(c.factor(step: 0, totalSteps: 12) == 0.5 && c.factor(step: 1, totalSteps: 12) == 1)
        #expect(c.factor(step: 2, totalSteps: 12) == 1 && abs(c.factor(step: 7, totalSteps: 12) - 0.5) < 1e-12)
        let l = LearningRateSchedule(.linear)
        #expect(l.factor(step: 5, totalSteps: 10) == 0.5)
        #expect(LearningRateSchedule().factor(step: 9, totalSteps: 10) == 1)
    }

    @Test func resumingFromASavedStateGivesTheSameWeightsBitForBit() throws {
        func run(resumeAt: Int?) throws -> [Float] {
            let teacher = try load("sd35_tiny"), student = try load("sd35_tiny", removing: ["blocks.1"])
            func make() throws -> Trainer {
                try Trainer(model: student, objective: .distillation(teacher: teacher, loss: DistillationLoss(feature: 0.1)),
                            trainable: TrainableParameters(structure: student.structure, loaded: Set(student.weights.names), frozenBlocks: [0]),
                            settings: OptimizerSettings(learningRate: 1e-3, schedule: LearningRateSchedule(.cosine, warmupSteps: 1)),
                            random: TrainingRandom(seed: 9), totalSteps: 4)
            }
            var trainer = try make()
            let bt = try batch(student)
            var start = 0
            if let k = resumeAt {
                for s in 0..<k { _ = try trainer.step(bt, step: s) }
                let path = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID().uuidString).safetensors").path
                try trainer.state(completedSteps: k).serialized().write(to: URL(fileURLWithPath: path))
                defer { try? FileManager.default.removeItem(atPath: path) }
                // A fresh model and trainer, as after a restart.
                let again = try load("sd35_tiny", removing: ["blocks.1"])
                trainer = try Trainer(model: again, objective: trainer.objective, trainable: trainer.trainable,
                                      settings: trainer.optimizer.settings, random: trainer.random, totalSteps: 4)
                start = try trainer.restore(try TrainingState.load(path: path))
                #expect(start == k)
            }
            for s in start..<4 { _ = try trainer.step(bt, step: s) }
            return try trainer.model.backend.floats(try trainer.model.weights("transformer_blocks.2.attn.to_q.weight"))
        }
        let straight = try run(resumeAt: nil)
        #expect(try run(resumeAt: 2) == straight)
    }

    @Test func fluxDistillationStepWithSingleBlockFeatures() throws {
        let teacher = try load("flux_tiny")
        let student = try load("flux_tiny", removing: ["blocks.1", "blocks.2.attn"])
        let be = student.backend
        // Packed latents (B, 4·3 tokens, 16), text (B, 3, 24), pooled (B, 12), guidance, ids.
        let bt = TrainingBatch(latents: try be.randomNormal([2, 12, 16], seed: 1, offset: 0),
                               encoderHiddenStates: try be.randomNormal([2, 3, 24], seed: 1, offset: 1000),
                               pooledProjections: try be.randomNormal([2, 12], seed: 1, offset: 2000),
                               guidance: [3.5, 1], imgIds: fluxImageIds(height: 4, width: 3), txtIds: [Float](repeating: 0, count: 9))
        let trainer = try Trainer(model: student, objective: .distillation(teacher: teacher, loss: DistillationLoss(feature: 0.5)),
                                  trainable: TrainableParameters(structure: student.structure, loaded: Set(student.weights.names), frozenBlocks: [0]),
                                  settings: OptimizerSettings(learningRate: 1e-3), random: TrainingRandom(seed: 4), totalSteps: 2)
        #expect(trainer.features.blocks == [2: true, 3: true])      // double block 0 frozen, 1 removed; single blocks 2, 3
        let l0 = try trainer.lossAndGradients(bt, step: 0).0
        #expect(l0.output > 0 && l0.feature > 0)
        _ = try trainer.step(bt, step: 0)
        let l1 = try trainer.lossAndGradients(bt, step: 0).0
        #expect(l1.total < l0.total, "\(l0.total) → \(l1.total)")
    }
}
