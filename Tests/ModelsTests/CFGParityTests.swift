// Classifier-free guidance against diffusers' StableDiffusion3Pipeline itself: the committed tiny SD3 / SD3.5
// transformers sampled with guidance_scale 4.5 over 3 Euler steps (shift 3) from the fixture's initial latents,
// prompt embeddings and one shared negative embedding (Tests/Fixtures/models/generate_cfg.py).

import CPUBackend
import TensorFiles
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing

@Suite("Classifier-free guidance parity with diffusers")
struct CFGParityTests {
    @Test("SD3 CFG sampling equals StableDiffusion3Pipeline's latents", arguments: ["sd3_tiny", "sd35_tiny"])
    func pipelineParity(_ name: String) throws {
        let be = CPUBackend()
        let dir = modelFixtures + "/" + name
        let file = try SafetensorsFile(path: dir + "/cfg.safetensors")
        func t(_ k: String) throws -> Tensor { try be.tensor(try file.floats(k), shape: try file.info(k).shape) }
        let g = try #require(file.metadata["guidance_scale"].flatMap(Float.init))
        let steps = try #require(file.metadata["steps"].flatMap(Int.init))
        let shift = try #require(file.metadata["shift"].flatMap(Double.init))
        let model = try loadTransformer(path: dir, backend: be)
        let cond = Conditioning(encoderHiddenStates: try t("encoder_hidden_states"), pooledProjections: try t("pooled_projections"))
        let ne = try t("negative_encoder_hidden_states"), np = try t("negative_pooled_projections")
        let uncond = Conditioning(encoderHiddenStates: try be.concat([ne, ne], axis: 0), pooledProjections: try be.concat([np, np], axis: 0))
        let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.init(shift: shift)), steps: steps, guidanceScale: g)
        let out = try be.floats(try sampler.sample(model, from: try t("noise"), cond: cond, uncond: uncond))
        let ref = try file.floats("sample")
        let err = relativeError(out, ref)
        print("cfg parity \(name): \(err)")
        #expect(err <= 1e-4)

        // Guidance matters here: the unguided sample is far from the pipeline's guided one.
        let plain = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.init(shift: shift)), steps: steps)
        #expect(relativeError(try be.floats(try plain.sample(model, from: try t("noise"), cond: cond)), ref) > 1e-2)
    }
}
