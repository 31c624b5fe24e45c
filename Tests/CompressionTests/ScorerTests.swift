// The built-in scorers (RemovalScorer, BlockCosineScorer, TaylorScorer) and `evaluate`'s measurements
// (SampleEvaluation) on a tiny random SD3 model, without a store, each against a hand computation from the
// model's own forward, trace and gradient calls.

import CPUBackend
import Compression
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing

/// A random sd3_tiny-shaped model (2 blocks) and 3 calibration samples in batches of 2 and 1.
struct TinySetup {
    let be = CPUBackend()
    let model: any DiffusionTransformer
    let batches: SampleBatches
    let ranges = [0..<2, 2..<3]
    let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.init(shift: 3)), steps: 2)
    static let latent = [4, 8, 8]

    init(latents: Bool) throws {
        let be = self.be
        model = try randomTransformer(try ModelConfig.load(path: fixturesRoot + "/models/sd3_tiny/config.json"), backend: be, seed: 11)
        let per = Self.latent.reduce(1, *)
        let ehs = try be.randomNormal([3, 5, 24], seed: 2, offset: 0), pooled = try be.randomNormal([3, 12], seed: 3, offset: 0)
        let x0 = try be.randomNormal([3] + Self.latent, seed: 4, offset: 0)
        let ranges = self.ranges
        batches = SampleBatches(sizes: ranges.map(\.count)) { i in
            let r = ranges[i]
            func rows(_ t: Tensor) throws -> Tensor { try be.slice(t, axis: 0, start: r.lowerBound, length: r.count) }
            let noise = try be.concat(try r.map { try be.randomNormal([1] + Self.latent, seed: 7, offset: UInt64($0 * per)) }, axis: 0)
            return SampleBatch(noise: noise, cond: Conditioning(encoderHiddenStates: try rows(ehs), pooledProjections: try rows(pooled)),
                               latents: latents ? try rows(x0) : nil)
        }
    }

    func data(sigmas: [Float] = [0.25, 0.75]) -> ScoringData {
        ScoringData(model: model, batches: batches, sampler: sampler, sigmas: sigmas, imgIds: nil)
    }

    func removal(_ a: String) throws -> Removal { try Removal([try ComponentAddress(parsing: a)], in: model.structure) }

    /// x_t and the model inputs at σ, built element by element.
    func handInputs(_ b: SampleBatch, x0: Tensor, sigma: Float) throws -> TransformerInputs {
        let xt = zip(try be.floats(b.noise), try be.floats(x0)).map { sigma * $0 + (1 - sigma) * $1 }
        return TransformerInputs(hiddenStates: try be.tensor(xt, shape: b.noise.shape), encoderHiddenStates: b.cond.encoderHiddenStates,
                                 pooledProjections: b.cond.pooledProjections, timestep: Array(repeating: sigma * 1000, count: b.count))
    }
}

@Suite("Built-in scorers and evaluation without a store")
struct ScorerTests {
    @Test("remove, final samples: ΔP = mean over samples of the distance of the removal's samples to the model's")
    func removeOnSamples() throws {
        let s = try TinySetup(latents: false)
        let data = s.data()
        let addresses = ["blocks.0", "blocks.1.ff"]
        for distance in OutputDistance.allCases {
            let got = try RemovalScorer(data: data, readout: .samples).scores(addresses.map { try ComponentAddress(parsing: $0) }, distance: distance)
            for a in addresses {
                var total = 0.0
                for i in 0..<s.batches.count {
                    let b = try s.batches.batch(i)
                    let ref = try s.be.floats(try s.sampler.sample(s.model, from: b.noise, cond: b.cond))
                    let out = try s.be.floats(try s.sampler.sample(s.model, from: b.noise, cond: b.cond, removing: try s.removal(a)))
                    for (o, r) in zip(SampleBatches.perSample(out, count: b.count), SampleBatches.perSample(ref, count: b.count)) { total += distance.of(o, r) }
                }
                let want = total / 3
                #expect(got[try ComponentAddress(parsing: a)] == want, "\(a) \(distance)")
                #expect(want > 0)
            }
        }
        // Reference + 2 removals, each 2 batches × 2 steps, for each of the three distances.
        #expect(data.passes.value == 3 * (1 + 2) * 2 * 2)
    }

    @Test("remove, velocities: one forward per σ at x_t = σ·noise + (1−σ)·x₀, x₀ the batch latents or the model's sample")
    func removeOnVelocities() throws {
        for latents in [true, false] {
            let s = try TinySetup(latents: latents)
            let data = s.data()
            let scorer = RemovalScorer(data: data, readout: .velocities)
            #expect(scorer.valuesPerSample(latent: 256) == 512)
            let out = try scorer.outputs(removing: try s.removal("blocks.1.attn"))
            var want: [[Float]] = []
            for i in 0..<s.batches.count {
                let b = try s.batches.batch(i)
                let x0 = try b.latents ?? s.sampler.sample(s.model, from: b.noise, cond: b.cond)
                let parts = try data.sigmas.map { sigma in
                    SampleBatches.perSample(try s.be.floats(try s.model.forward(try s.handInputs(b, x0: x0, sigma: sigma), removing: try s.removal("blocks.1.attn"))), count: b.count)
                }
                for k in 0..<b.count { want.append(parts[0][k] + parts[1][k]) }
            }
            #expect(out == want, "latents \(latents)")
            // 2 σ per batch, plus 2 sampling steps per batch for x₀ without latents.
            #expect(data.passes.value == 2 * 2 + (latents ? 0 : 2 * 2))
        }
    }

    @Test("block cosine: 1 − cos(output of the block before, output of the block), both streams of a sample together")
    func blockCosine() throws {
        let s = try TinySetup(latents: true)
        let data = s.data(sigmas: [0.5])
        let got = try BlockCosineScorer.scores(data)
        #expect(Set(got.keys) == [1])   // block 0 has no input feature
        var total = 0.0
        for i in 0..<s.batches.count {
            let b = try s.batches.batch(i)
            let trace = try s.model.forwardTrace(try s.handInputs(b, x0: try #require(b.latents), sigma: 0.5), capture: [0, 1])
            func feature(_ block: Int) throws -> [[Float]] {
                let t = try #require(trace.blocks[block])
                return zip(SampleBatches.perSample(try s.be.floats(t.image), count: b.count),
                           SampleBatches.perSample(try s.be.floats(t.context), count: b.count)).map { $0 + $1 }
            }
            for (a, o) in zip(try feature(0), try feature(1)) { total += 1 - FidelityMetrics(o, a).cosine }
        }
        #expect(got[1] == total / 3)
        #expect(data.passes.value == 2)
    }

    @Test("Taylor: Σ|w·∂L/∂w| over the component's tensors, L the flow-matching MSE; the stopping rule")
    func taylor() throws {
        let s = try TinySetup(latents: true)
        let addresses = try ["blocks.0.ff", "blocks.1"].map { try ComponentAddress(parsing: $0) }
        // One level: σ = 1.
        let r = try TaylorScorer(levels: 1, threshold: 0.05).scores(s.data(), addresses)
        #expect(r.levels == 1)
        // One backward with every scored tensor trainable, as the scorer runs it.
        let wanted = Set(try addresses.flatMap { try s.model.structure.tensorNames(of: $0) })
        for a in addresses {
            let names = try s.model.structure.tensorNames(of: a).filter { s.model.weights.contains($0) }
            var want = 0.0
            for i in 0..<s.batches.count {
                let b = try s.batches.batch(i)
                let x0 = try #require(b.latents)
                let target = try s.be.tensor(zip(try s.be.floats(b.noise), try s.be.floats(x0)).map { $0 - $1 }, shape: x0.shape)
                let g = try s.model.mseGradients(try s.handInputs(b, x0: x0, sigma: 1), target: target, trainable: { wanted.contains($0) })
                for n in names {
                    let w = try s.be.floats(try s.model.weights(n)), d = try s.be.floats(try #require(g.gradients[n]))
                    want += zip(w, d).reduce(0) { $0 + abs(Double($1.0) * Double($1.1)) }
                }
            }
            let got = try #require(r.scores[a])
            #expect(want > 0 && abs(got - want) <= 1e-9 * want, "\(a): \(got) vs \(want)")
        }
        // Threshold 0 never stops early; the whole block owns its sub-components' tensors.
        let all = try TaylorScorer(levels: 3, threshold: 0).scores(s.data(), try ["blocks.0", "blocks.0.ff"].map { try ComponentAddress(parsing: $0) })
        #expect(all.levels == 3)
        #expect(try #require(all.scores[try ComponentAddress(parsing: "blocks.0")]) > (try #require(all.scores[try ComponentAddress(parsing: "blocks.0.ff")])))
    }

    @Test("task loss: MSE(v, noise − x₀) over samples and σ; latency: median of the timed runs")
    func evaluation() throws {
        let s = try TinySetup(latents: true)
        let sigmas: [Float] = [0.25, 0.5]
        let got = try SampleEvaluation.flowMatchLoss(s.model, s.batches, sigmas: sigmas, imgIds: nil)
        var total = 0.0
        for i in 0..<s.batches.count {
            let b = try s.batches.batch(i)
            let x0 = try #require(b.latents)
            let target = zip(try s.be.floats(b.noise), try s.be.floats(x0)).map { $0 - $1 }
            for sigma in sigmas {
                let v = try s.be.floats(try s.model.forward(try s.handInputs(b, x0: x0, sigma: sigma)))
                let mse = zip(v, target).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) } / Double(v.count)
                total += mse * Double(b.count)
            }
        }
        let want = total / Double(3 * sigmas.count)
        #expect(abs(got - want) <= 1e-6 * want, "\(got) vs \(want)")
        #expect(throws: CompressionError.self) { try SampleEvaluation.flowMatchLoss(s.model, try TinySetup(latents: false).batches, sigmas: sigmas, imgIds: nil) }

        var runs = 0
        let l = try SampleEvaluation.latency(s.sampler, s.model, batch: try s.batches.batch(0), imgIds: nil, warmup: 1, repeats: 3) { runs += 1 }
        #expect(runs == 4 && l.runs.count == 3)
        #expect(l.median == SampleEvaluation.median(l.runs) && l.perStep == l.median / 2 && l.perSample == l.median / 2)
        #expect(SampleEvaluation.median([3, 1, 2]) == 2 && SampleEvaluation.median([4, 1, 3, 2]) == 2.5 && SampleEvaluation.median([]).isNaN)
    }
}
