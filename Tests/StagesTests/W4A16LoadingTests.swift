// Quantised models run through the W4A16 kernel: 4-bit Linear weights stay packed (codes + per-block
// statistics, never a dense tensor), the output equals the dequantise-at-load reference path, and training
// or back-propagating through a packed weight fails with a clear error.

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

@Suite struct W4A16LoadingTests {
    /// The tiny SD3 teacher quantised four ways, and its inputs.
    struct Setup {
        var dir: TemporaryDirectory   // keeps the store alive
        var run: RecipeRun
        var io: TransformerInputs
        var be: CPUBackend

        func loaded(_ stage: String) throws -> LoadedModel {
            let digest = try #require(run.result(stage)?.outputs["model"])
            let manifest = try ModelStore.manifest(digest, store: run.store)
            let structure = ModelStructure(try ModelConfig.parse(manifest.config, file: "test"))
            return LoadedModel(digest: digest, manifest: manifest, structure: structure,
                               removal: try Removal(parsing: manifest.structure.removed, in: structure))
        }
    }

    static let stages = ["nf4", "fp4dq", "int4", "int4s"]

    static let recipeStages = [
        "nf4": "{ kind: quantise, model: teacher, format: nf4, block_size: 64 }",
        "fp4dq": "{ kind: quantise, model: teacher, format: fp4, block_size: 64, double_quant: true }",
        "int4": "{ kind: quantise, model: teacher, format: int4, block_size: 64, scheme: asymmetric }",
        "int4s": "{ kind: quantise, model: teacher, format: int4, block_size: 32 }",
    ]

    func setup(_ stages: [String] = Self.stages) async throws -> Setup {
        let dir = TemporaryDirectory()
        let teacher = try copyModel("sd3_tiny", into: dir)
        let run = try await runRecipe(dir, """
            recipe: 1
            name: w
            models: { teacher: { path: \(teacher) } }
            stages:
            """ + stages.map { "\n  \($0): \(Self.recipeStages[$0] ?? "")" }.joined())
        #expect(run.results.allSatisfy { $0.status == .ran }, "\(run.results.map { "\($0.name): \($0.error ?? "")" })")
        let be = CPUBackend()
        let config = try ModelConfig.load(path: fixtures + "/models/sd3_tiny/config.json")
        let io = try TransformerInputs.load(path: fixtures + "/models/sd3_tiny/io.safetensors", for: config, backend: be)
        return Setup(dir: dir, run: run, io: io, be: be)
    }

    /// max |a − b| / max |b|.
    func relativeMaxError(_ a: [Float], _ b: [Float]) -> Double {
        let scale = b.map { Double(abs($0)) }.max() ?? 1
        return zip(a, b).map { Double(abs($0 - $1)) }.max().map { $0 / max(scale, 1e-30) } ?? 0
    }

    /// Same math, two paths: packed W4A16 vs dequantise-at-load. f32 compute: the weight values are identical
    /// (nf4/fp4/symmetric int4 bit-exact; asymmetric int4 within 2 ulp), only the summation order differs
    /// → ≤ 1e-5 of the output's range. bf16 compute: the reference also rounds the weight to bf16 (relative
    /// 2⁻⁹ per weight) while the kernel uses the f32 value → ≤ 2e-2.
    @Test func packedRunsLikeDequantisedAtLoadAndHoldsNoDenseWeight() async throws {
        let s = try await setup()
        for stage in Self.stages {
            let m = try s.loaded(stage)
            for (compute, bound) in [(ComputeDType.f32, 1e-5), (.bf16, 2e-2)] {
                let packed = try ModelLoading.transformer(m, store: s.run.store, backend: s.be, compute: compute)
                let dense = try ModelLoading.transformer(m, store: s.run.store, backend: s.be, compute: compute, quantised: .dequantised)
                #expect(!packed.weights.packedNames.isEmpty && dense.weights.packedNames.isEmpty)
                let a = try s.be.floats(try packed.forward(s.io)), b = try s.be.floats(try dense.forward(s.io))
                let err = relativeMaxError(a, b)
                #expect(a.count == b.count && a.allSatisfy(\.isFinite))
                #expect(err <= bound, "\(stage) \(compute): relative max error \(err) > \(bound)")
            }
        }
        try denseWeightIsNeverMaterialised(s)
    }

    /// Every quantised Linear weight is held as codes + per-block statistics: no dense tensor exists, the
    /// bytes held are n/2 + 4·blocks (+ 4·blocks of zeros) + 64, and the whole store is far smaller than
    /// the dequantised one.
    func denseWeightIsNeverMaterialised(_ s: Setup) throws {
        for stage in Self.stages {
            let m = try s.loaded(stage)
            let t = try ModelLoading.transformer(m, store: s.run.store, backend: s.be)
            let quantised = m.manifest.tensors.filter { $0.value.quantisation != nil }.map(\.key).sorted()
            #expect(!quantised.isEmpty)
            #expect(t.weights.packedNames == quantised, "\(stage)")
            for name in quantised {
                #expect(t.weights.isPacked(name))
                #expect { _ = try t.weights(name) } throws: { "\($0)".contains(name) && "\($0)".contains("packed") }
                guard case .packed(let w) = try t.weights.linearWeight(name) else {
                    Issue.record("\(stage) \(name) is not packed"); continue
                }
                let n = w.packed.count, blocks = w.blockCount
                #expect(w.packed.dtype.bitsPerElement == 4 && w.packed.byteCount == (n + 1) / 2)
                #expect(w.scale.dtype == .f32 && w.scale.count == blocks)
                #expect((w.zero != nil) == (stage == "int4"))
                let expected = (n + 1) / 2 + 4 * blocks + (w.zero == nil ? 0 : 4 * blocks) + 64
                #expect(LinearWeight.packed(w).byteCount == expected)
            }
            let dense = try ModelLoading.transformer(m, store: s.run.store, backend: s.be, quantised: .dequantised)
            let quantisedDenseBytes = try quantised.reduce(0) { $0 + (try dense.weights($1)).byteCount }
            let quantisedPackedBytes = try quantised.reduce(0) { $0 + (try t.weights.linearWeight($1)).byteCount }
            #expect(dense.weights.byteCount - t.weights.byteCount == quantisedDenseBytes - quantisedPackedBytes)
            #expect(Double(quantisedPackedBytes) < 0.2 * Double(quantisedDenseBytes), "\(stage)")
            #expect(try t.weights.nonFiniteTensors().isEmpty)
        }
    }

    /// A packed weight cannot be trained, and gradients cannot pass through it: both throw naming the weight.
    @Test func trainingThroughPackedWeightsThrows() async throws {
        let s = try await setup(["nf4"])
        let t = try ModelLoading.transformer(try s.loaded("nf4"), store: s.run.store, backend: s.be)
        let target = try s.be.zeros(s.io.hiddenStates.shape, dtype: .f32)
        #expect { _ = try t.mseGradients(s.io, target: target) } throws: { e in
            "\(e)".contains("4-bit quantised weight") && "\(e)".contains(".weight") && "\(e)".contains("before the quantise stage")
        }
        // Only the biases train: the forward records, the backward reaches a packed Linear and stops.
        #expect { _ = try t.mseGradients(s.io, target: target, trainable: { $0.hasSuffix(".bias") }) } throws: { e in
            "\(e)".contains("cannot back-propagate through a 4-bit quantised weight")
        }
    }
}
