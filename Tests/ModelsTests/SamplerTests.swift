// The flow-matching Euler sampler: the SD3.5 Large Turbo schedule against diffusers (schedules.json), and
// deterministic tiny sampling runs checked step by step against explicit forward passes.

import CPUBackend
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing

@Suite("Flow-matching Euler sampler")
struct SamplerTests {
    @Test("SD3.5 Large Turbo: 4 steps, shift 3, sigmas to 1e-6 of diffusers")
    func turboSchedule() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: modelFixtures + "/schedules.json"))
        let all = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let turbo = try #require(all["sd35_large_turbo_4"] as? [String: Any])
        let ref = try #require(turbo["sigmas"] as? [Double])
        let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.sd35LargeTurbo), steps: 4)
        let ours = try sampler.sigmas()
        #expect(ours.count == ref.count)
        for (a, b) in zip(ours, ref) { #expect(abs(Double(a) - b) <= 1e-6) }
        // METHOD.md §3: [1, 0.857692, 0.602151, 0.008929, 0].
        #expect(abs(ours[1] - 0.857692) < 1e-6 && abs(ours[3] - 0.008929) < 1e-6)
    }

    /// Fixture conditioning (batch 2) of a model folder.
    func conditioning(_ name: String, _ be: any Backend) throws -> (any DiffusionTransformer, Fixture, Conditioning) {
        let fx = try Fixture(name, backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        let cond = Conditioning(encoderHiddenStates: fx.inputs.encoderHiddenStates, pooledProjections: fx.inputs.pooledProjections,
                                guidance: fx.inputs.guidance, txtIds: fx.inputs.txtIds)
        return (model, fx, cond)
    }

    @Test("SD3 tiny: 2 steps equal explicit Euler steps; the seed decides the noise")
    func sd3Deterministic() throws {
        let be = CPUBackend()
        let (model, fx, cond) = try conditioning("sd3_tiny", be)
        let shape = fx.inputs.hiddenStates.shape
        let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.init(shift: 3)), steps: 2)
        let a = try be.floats(try sampler.sample(model, latentShape: shape, cond: cond, seed: 7))
        let b = try be.floats(try sampler.sample(model, latentShape: shape, cond: cond, seed: 7))
        let c = try be.floats(try sampler.sample(model, latentShape: shape, cond: cond, seed: 8))
        #expect(a == b)
        #expect(a != c)
        #expect(a.allSatisfy { $0.isFinite })

        // By hand: x ← x + (σ₁ − σ₀)·v(x, 1000σ₀), then the same for σ₁ → 0.
        let sig = try sampler.sigmas()
        var x = try be.floats(try be.randomNormal(shape, seed: 7, offset: 0))
        for k in 0..<2 {
            var inp = fx.inputs
            inp.hiddenStates = try be.tensor(x, shape: shape)
            inp.timestep = [sig[k] * 1000, sig[k] * 1000]
            let v = try be.floats(try model.forward(inp))
            x = zip(x, v).map { $0 + (sig[k + 1] - sig[k]) * $1 }
        }
        #expect(relativeError(a, x) <= 1e-6)
    }

    @Test("FLUX tiny with CFG: v = v_u + g·(v_c − v_u) on a [uncond, cond] batch")
    func fluxCFG() throws {
        let be = ReferenceBackend()
        let (model, fx, cond) = try conditioning("flux_tiny", be)
        let shape = fx.inputs.hiddenStates.shape
        let uncond = Conditioning(encoderHiddenStates: try be.zeros(cond.encoderHiddenStates.shape, dtype: .f32),
                                  pooledProjections: try be.zeros(cond.pooledProjections.shape, dtype: .f32),
                                  guidance: cond.guidance, txtIds: cond.txtIds)
        let g: Float = 4
        let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.init(shift: 1)), steps: 1, guidanceScale: g)
        let out = try be.floats(try sampler.sample(model, latentShape: shape, cond: cond, uncond: uncond, imgIds: fx.inputs.imgIds, seed: 3))

        let x = try be.randomNormal(shape, seed: 3, offset: 0)
        func velocity(_ c: Conditioning) throws -> [Float] {
            try be.floats(try model.forward(TransformerInputs(
                hiddenStates: x, encoderHiddenStates: c.encoderHiddenStates, pooledProjections: c.pooledProjections,
                timestep: [1, 1], guidance: c.guidance, imgIds: fx.inputs.imgIds, txtIds: c.txtIds)))
        }
        let vc = try velocity(cond), vu = try velocity(uncond), x0 = try be.floats(x)
        let expected = x0.indices.map { x0[$0] - (vu[$0] + g * (vc[$0] - vu[$0])) }         // σ: 1 → 0
        #expect(relativeError(out, expected) <= 1e-5)
    }

    @Test("Initial noise is the same on the reference and CPU backends")
    func noiseAcrossBackends() throws {
        let a = try ReferenceBackend().floats(try FlowMatchEulerSampler.noise(ReferenceBackend(), shape: [2, 4, 8, 8], seed: 42))
        let cpu = CPUBackend()
        let b = try cpu.floats(try FlowMatchEulerSampler.noise(cpu, shape: [2, 4, 8, 8], seed: 42))
        #expect(a == b)
    }
}
