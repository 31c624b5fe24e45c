// Random weights for a configured model, built in memory on a backend: benchmarks and tests that need a
// model of a given shape without a checkpoint. Matrices ~ N(0, 1/fan_in), vectors ~ 1 + N(0, 0.01) for
// norm scales and N(0, 0.01) for biases (nothing zero-initialised, unlike diffusers).

import ModelSpec
import TensorCore

extension WeightStore {
    /// Random weights for every tensor of `structure` (Philox noise from `seed`).
    public static func random(_ structure: ModelStructure, backend: any Backend, compute: ComputeDType, seed: UInt64) throws -> WeightStore {
        var out: [String: Tensor] = [:]
        var offset: UInt64 = 0
        for spec in structure.tensors {
            var t = try backend.randomNormal(spec.shape, seed: seed, offset: offset)
            offset += UInt64(spec.elementCount)
            if spec.shape.count >= 2 {
                let fanIn = spec.shape.dropFirst().reduce(1, *)
                t = try backend.scale(t, spec.isBuffer ? 1 : 1 / Float(fanIn).squareRoot())
                if !spec.isBuffer && compute == .bf16 { t = try backend.cast(t, to: .bf16) }
            } else if spec.name.hasSuffix("norm_q.weight") || spec.name.hasSuffix("norm_k.weight")
                        || spec.name.hasSuffix("norm_added_q.weight") || spec.name.hasSuffix("norm_added_k.weight") {
                let ones = try backend.tensor([Float](repeating: 1, count: spec.elementCount), shape: spec.shape)
                t = try backend.add(ones, try backend.scale(t, 0.01))
            } else {
                t = try backend.scale(t, 0.01)
            }
            out[spec.name] = t
        }
        return WeightStore(tensors: out, backend: backend, compute: compute, source: "<random seed \(seed)>")
    }
}

/// Builds the transformer for `config` with random weights (no checkpoint).
public func randomTransformer(_ config: ModelConfig, backend: any Backend, compute: ComputeDType = .f32,
                              seed: UInt64 = 0) throws -> any DiffusionTransformer {
    let structure = ModelStructure(config)
    let weights = try WeightStore.random(structure, backend: backend, compute: compute, seed: seed)
    switch config {
    case .sd3(let c): return SD3Transformer(config: c, structure: structure, removal: Removal(), weights: weights)
    case .flux(let c): return FluxTransformer(config: c, structure: structure, removal: Removal(), weights: weights)
    }
}
