// The numeric half's scorers (Compression) called directly on a dataset's batches give the ΔP the `score` stage
// records through a real recipe (store, resume keys, prepared weights): the stage only wires inputs and keeps
// results, it does not compute them differently.

import CPUBackend
import Compression
import Foundation
import ModelSpec
import Models
@testable import Stages
import TensorCore
import TestSupport
import Testing

@Suite struct ScorerParityTests {
    @Test func compressionScorersGiveTheStagesDeltaP() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let file = try writeDataset(dir, j: 24, p: 12, latents: [4, 8, 8])
        let common = "model: teacher, data: calib, batch: 2, sampling: { steps: 2 }"
        let run = try await runRecipe(dir, """
            recipe: 1
            name: parity
            seed: 7
            models: { teacher: { path: \(teacher) } }
            datasets: { calib: { path: \(file), format: safetensors } }
            stages:
              remove: { kind: score, \(common), components: [block, ff], metric: psnr }
              vel: { kind: score, \(common), components: [block, attn], metric: velocity-mse, velocity: { sigmas: [0.5, 0.25] } }
              koala: { kind: score, \(common), method: cosine, velocity: { sigmas: [0.5] } }
              taylor: { kind: score, \(common), components: [block, ff], method: taylor, taylor: { timesteps: 2 } }
            """)

        let be = CPUBackend()
        let model = try loadTransformer(path: dir.path + "/teacher", backend: be)
        let ds = try PromptDataset.open(path: dir.path + "/" + file, source: file)
        let shape = Array(try ds.latentShape(for: model.config, batch: 1).dropFirst())
        let ranges = ds.batches(size: 2)
        let batches = SampleBatches(sizes: ranges.map(\.count)) { i in
            SampleBatch(noise: try PromptDataset.noise(ranges[i], sampleShape: shape, seed: 7, backend: be),
                        cond: try ds.conditioning(ranges[i], backend: be), latents: try ds.latents(ranges[i], backend: be))
        }
        let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(FlowMatchSchedulerConfig(shift: 3)), steps: 2)
        func data(_ sigmas: [Float]) -> ScoringData { ScoringData(model: model, batches: batches, sampler: sampler, sigmas: sigmas, imgIds: nil) }
        func addresses(_ names: [String]) throws -> [ComponentAddress] { try names.map { try ComponentAddress(parsing: $0) } }
        func expectSame(_ stage: String, _ direct: [ComponentAddress: Double], tolerance: Double = 1e-12) throws {
            let s = try scores(run, stage)
            let recorded = Dictionary(uniqueKeysWithValues: s.entries.compactMap { e in e.deltaP.map { (e.address, $0) } })
            #expect(recorded.count == direct.count, "\(stage)")
            for (a, v) in direct {
                let r = try #require(recorded[a.description], "\(stage) \(a)")
                #expect(abs(r - v) <= tolerance * max(1, abs(v)), "\(stage) \(a): stage \(r), direct \(v)")
            }
        }

        try expectSame("remove", try RemovalScorer(data: data([0.25, 0.5, 0.75]), readout: .samples)
                        .scores(try addresses(["blocks.0", "blocks.1", "blocks.0.ff", "blocks.1.ff"]), distance: .psnr))
        try expectSame("vel", try RemovalScorer(data: data([0.5, 0.25]), readout: .velocities)
                        .scores(try addresses(["blocks.0", "blocks.1", "blocks.0.attn", "blocks.1.attn"]), distance: .mse))
        let koala = try BlockCosineScorer.scores(data([0.5]))
        try expectSame("koala", Dictionary(uniqueKeysWithValues: koala.map { (ComponentAddress(block: $0.key, component: .block), $0.value) }))
        let taylor = try TaylorScorer(levels: 2, threshold: 0.05).scores(data([0.5]), try addresses(["blocks.0", "blocks.1", "blocks.0.ff", "blocks.1.ff"]))
        try expectSame("taylor", taylor.scores, tolerance: 1e-9)
        #expect(metric(run.result("taylor"), "taylor_timesteps") == Double(taylor.levels))
    }
}
