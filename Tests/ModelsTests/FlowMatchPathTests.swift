// The forward-at-σ helper (FlowMatchPath.swift) against a hand computation on the fixture models, and the
// sample batches / `sampleAll` against explicit sampler calls (SampleBatches.swift).

import CPUBackend
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing

@Suite("Flow-matching path and sample batches")
struct FlowMatchPathTests {
    /// (model, fixture, conditioning) of a fixture; the fixture's hidden states serve as x₀.
    func setup(_ name: String, _ be: any Backend) throws -> (any DiffusionTransformer, Fixture, Conditioning) {
        let fx = try Fixture(name, backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        let cond = Conditioning(encoderHiddenStates: fx.inputs.encoderHiddenStates, pooledProjections: fx.inputs.pooledProjections,
                                guidance: fx.inputs.guidance, txtIds: fx.inputs.txtIds)
        return (model, fx, cond)
    }

    @Test("x_t = σ·noise + (1−σ)·x₀ and v = noise − x₀, element by element")
    func pointAndTarget() throws {
        let be = CPUBackend()
        let noise = try be.tensor([1, -2, 0.5, 4], shape: [2, 2]), x0 = try be.tensor([3, 1, -1, 0], shape: [2, 2])
        let xt = try be.floats(try FlowMatchPath.point(noise: noise, clean: x0, sigma: 0.25, backend: be))
        let sigma: Float = 0.25
        let n: [Float] = [1, -2, 0.5, 4], x: [Float] = [3, 1, -1, 0]
        #expect(xt == zip(n, x).map { sigma * $0 + (1 - sigma) * $1 })
        #expect(xt == [2.5, 0.25, -0.625, 1])
        #expect(try be.floats(try FlowMatchPath.velocityTarget(noise: noise, clean: x0, backend: be)) == [-2, -3, 1.5, 4])
        // The ends of the path: σ = 1 is the noise, σ = 0 the clean latents.
        #expect(try be.floats(try FlowMatchPath.point(noise: noise, clean: x0, sigma: 1, backend: be)) == [1, -2, 0.5, 4])
        #expect(try be.floats(try FlowMatchPath.point(noise: noise, clean: x0, sigma: 0, backend: be)) == [3, 1, -1, 0])
    }

    @Test("inputs(atSigma:) and velocity(atSigma:) equal a hand-built forward pass", arguments: ["sd3_tiny", "flux_tiny"])
    func velocityAtSigma(_ name: String) throws {
        let be = CPUBackend()
        let (model, fx, cond) = try setup(name, be)
        let shape = fx.inputs.hiddenStates.shape
        let x0 = fx.inputs.hiddenStates, noise = try be.randomNormal(shape, seed: 3, offset: 0)
        let sigma: Float = 0.4
        let n = try be.floats(noise), x = try be.floats(x0)
        let byHand = zip(n, x).map { sigma * $0 + (1 - sigma) * $1 }

        let inputs = try model.inputs(atSigma: sigma, noise: noise, clean: x0, cond: cond, imgIds: fx.inputs.imgIds)
        #expect(try be.floats(inputs.hiddenStates) == byHand)
        // SD3 takes σ·1000, FLUX σ (scaled inside the model); one per sample.
        let t: Float = name.hasPrefix("sd3") ? sigma * 1000 : sigma
        #expect(inputs.timestep == Array(repeating: t, count: shape[0]))

        var hand = fx.inputs
        hand.hiddenStates = try be.tensor(byHand, shape: shape)
        hand.timestep = Array(repeating: t, count: shape[0])
        let removal = try Removal([ComponentAddress(block: 0, component: .ff)], in: model.structure)
        let want = try be.floats(try model.forward(hand, removing: removal))
        let got = try be.floats(try model.velocity(atSigma: sigma, noise: noise, clean: x0, cond: cond, imgIds: fx.inputs.imgIds, removing: removal))
        #expect(got == want)
        #expect(try be.floats(try model.velocity(atSigma: sigma, noise: noise, clean: x0, cond: cond, imgIds: fx.inputs.imgIds)) != want)
    }

    @Test("sampleAll = one sample call per batch, split per sample; batches are remade identically")
    func sampleAllPerBatch() throws {
        let be = CPUBackend()
        let (model, fx, _) = try setup("sd3_tiny", be)
        let shape = Array(fx.inputs.hiddenStates.shape.dropFirst())
        // Three samples in batches of 2 and 1, each sample's noise from its own offset.
        func batch(_ range: Range<Int>) throws -> SampleBatch {
            let per = shape.reduce(1, *)
            let noise = try be.concat(try range.map { try be.randomNormal([1] + shape, seed: 5, offset: UInt64($0 * per)) }, axis: 0)
            let ehs = try be.concat(Array(repeating: try be.slice(fx.inputs.encoderHiddenStates, axis: 0, start: 0, length: 1), count: range.count), axis: 0)
            let pooled = try be.concat(Array(repeating: try be.slice(fx.inputs.pooledProjections, axis: 0, start: 0, length: 1), count: range.count), axis: 0)
            return SampleBatch(noise: noise, cond: Conditioning(encoderHiddenStates: ehs, pooledProjections: pooled))
        }
        let ranges = [0..<2, 2..<3]
        let batches = SampleBatches(sizes: [2, 1]) { try batch(ranges[$0]) }
        #expect(batches.count == 2 && batches.sampleCount == 3)
        #expect(try be.floats(try batches.batch(1).noise) == (try be.floats(try batches.batch(1).noise)))

        let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.init(shift: 3)), steps: 2)
        var seen: [Int] = []
        let all = try sampler.sampleAll(model, batches, imgIds: nil) { seen.append($0.count) }
        #expect(seen == [2, 1])
        #expect(all.count == 3 && all.allSatisfy { $0.count == shape.reduce(1, *) })
        for (k, r) in ranges.enumerated() {
            let b = try batches.batch(k)
            let x = try be.floats(try sampler.sample(model, from: b.noise, cond: b.cond))
            #expect(Array(all[r]) == SampleBatches.perSample(x, count: r.count))
        }
        #expect(SampleBatches.perSample([1, 2, 3, 4, 5, 6], count: 3) == [[1, 2], [3, 4], [5, 6]])
        // Passes of one sample call: steps, doubled only with CFG and an unconditional batch.
        #expect(sampler.forwardPasses(uncond: nil) == 2)
        let cfg = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.init(shift: 3)), steps: 2, guidanceScale: 4)
        let uncond = try batches.batch(0).cond
        #expect(cfg.forwardPasses(uncond: nil) == 2 && cfg.forwardPasses(uncond: uncond) == 4)
    }
}
