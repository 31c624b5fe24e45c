// The loading glue: a Model artifact in the store runs exactly like the diffusers folder it came from (float
// tensors memory-mapped from store objects), honours a recorded removal and frozen set, and decodes
// nf4 / fp4 / int4 / int8 weights to values close to the originals (W4A16 parity: W4A16LoadingTests).

import ArtifactStore
import CPUBackend
import Foundation
import ModelSpec
import ModelStore
import Models
@testable import Stages
import TensorCore
import TestSupport
import Testing

@Suite struct ModelLoadingTests {
    func loaded(_ run: RecipeRun, _ stage: String) throws -> LoadedModel {
        let digest = try #require(run.result(stage)?.outputs["model"])
        let manifest = try ModelStore.manifest(digest, store: run.store)
        let structure = ModelStructure(try ModelConfig.parse(manifest.config, file: "test"))
        return LoadedModel(digest: digest, manifest: manifest, structure: structure,
                           removal: try Removal(parsing: manifest.structure.removed, in: structure))
    }

    @Test func storeModelsRunLikeTheirFolders() async throws {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: l
            models: { teacher: { path: \(teacher) } }
            stages:
              prune: { kind: prune, model: teacher, remove: "blocks.0.ff" }
              freeze: { kind: freeze, model: prune }
              nf4: { kind: quantise, model: teacher, format: nf4, block_size: 64, double_quant: true }
              int4: { kind: quantise, model: teacher, format: int4, block_size: 64, scheme: asymmetric }
              int4s: { kind: quantise, model: teacher, format: int4, block_size: 64 }
              int8: { kind: quantise, model: teacher, format: int8 }
            """)
        #expect(run.results.allSatisfy { $0.status == .ran }, "\(run.results.map { "\($0.name): \($0.error ?? "")" })")
        let be = CPUBackend()
        let folder = try loadTransformer(path: dir.path + "/" + teacher, backend: be)
        let io = try TransformerInputs.load(path: fixtures + "/models/sd3_tiny/io.safetensors", for: folder.config, backend: be)

        // The pruned, frozen model: same removal as the folder loaded with it, identical output.
        let frozen = try loaded(run, "freeze")
        let t = try ModelLoading.transformer(frozen, store: run.store, backend: be)
        let ref = try loadTransformer(path: dir.path + "/" + teacher, backend: be, removing: ["blocks.0.ff"])
        #expect(try be.floats(try t.forward(io)) == be.floats(try ref.forward(io)))
        #expect(t.removal.strings == ["blocks.0.ff"] && !t.weights.contains("transformer_blocks.0.ff.net.0.proj.weight"))
        // Float tensors are mapped from the store objects, not copied.
        let w = try t.weights("proj_out.weight")
        #expect(w.storage is HostStorage)

        // Quantised weights come back close to the teacher's.
        let teacherWeights = try loaded(run, "prune")   // shares the teacher's float objects
        for (stage, tolerance) in [("nf4", 0.15), ("int4", 0.12), ("int4s", 0.15), ("int8", 0.01)] {
            let q = try loaded(run, stage)
            let qt = try ModelLoading.transformer(q, store: run.store, backend: be, quantised: .dequantised)
            for name in ["transformer_blocks.1.attn.to_q.weight", "proj_out.weight"] {
                let a = try be.floats(try qt.weights(name))
                let b = try ModelStore.floats(name, of: teacherWeights.manifest, store: run.store)
                let err = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
                let norm = b.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
                #expect(err / norm < tolerance && err > 0, "\(stage) \(name): relative error \(err / norm)")
            }
            _ = try qt.forward(io)
            _ = try ModelLoading.transformer(q, store: run.store, backend: be).forward(io)   // packed (W4A16), int8 dense
        }
    }
}

@Suite struct DatasetTests {
    @Test func perSampleNoiseDoesNotDependOnTheBatch() throws {
        let be = CPUBackend()
        let all = try be.floats(try PromptDataset.noise(0..<3, sampleShape: [4, 2, 2], seed: 9, backend: be))
        let one = try be.floats(try PromptDataset.noise(1..<2, sampleShape: [4, 2, 2], seed: 9, backend: be))
        #expect(Array(all[16..<32]) == one)
        let other = try be.floats(try PromptDataset.noise(1..<2, sampleShape: [4, 2, 2], seed: 10, backend: be))
        #expect(other != one)
    }

    @Test func datasetShapesAndBadFiles() throws {
        let dir = TemporaryDirectory()
        let name = try writeDataset(dir, n: 4, j: 24, p: 12, latents: [4, 8, 8], labels: true, metadata: ["latent_height": "6", "latent_width": "4"])
        let d = try PromptDataset.open(path: dir.path + "/" + name, source: name, limit: 3)
        #expect(d.count == 3 && d.encoderHiddenStates.shape == [3, 5, 24] && d.labels == [0, 1, 0])
        #expect(d.latentSize.map { [$0.height, $0.width] } == [6, 4])
        #expect(d.batches(size: 2) == [0..<2, 2..<3])
        let config = try ModelConfig.load(path: fixtures + "/models/sd3_tiny/config.json")
        #expect(try d.latentShape(for: config, batch: 2) == [2, 4, 6, 4])
        #expect(throws: DatasetError.self) { try d.check(against: config) }   // latents are 8×8, metadata says 6×4
        let flux = try ModelConfig.load(path: fixtures + "/models/flux_tiny/config.json")
        #expect(try d.latentShape(for: flux, batch: 1, override: (height: 2, width: 3)) == [1, 6, 16])

        let missing = dir.write("bad.safetensors", "not a safetensors file")
        #expect { _ = try PromptDataset.open(path: missing, source: "bad.safetensors") } throws: { e in
            "\(e)".contains("bad.safetensors") && "\(e)".contains("safetensors")
        }
    }
}
