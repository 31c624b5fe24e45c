// Linear layers with 4-bit packed weights (`LinearWeight.packed`): the FLUX tiny model with every Linear weight
// nf4-quantised in memory runs through `matmulW4A16` and matches the same model given the dequantised weights,
// and gradients through a packed weight are refused.

import CPUBackend
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing

@Suite struct PackedLinearTests {
    /// (packed model, dense model with the dequantised values) from the flux_tiny fixture.
    func models(_ be: CPUBackend) throws -> (packed: any DiffusionTransformer, dense: any DiffusionTransformer, fx: Fixture) {
        let fx = try Fixture("flux_tiny", backend: be)
        let base = try loadTransformer(path: fx.dir, backend: be)
        guard case .flux(let config) = base.config else { throw ModelError(source: fx.dir, message: "not FLUX", fix: "") }
        let linear = Set(base.structure.tensors.filter { $0.shape.count == 2 && !$0.isBuffer }.map(\.name))
        var dense: [String: Tensor] = [:], packed: [String: Packed4BitWeight] = [:]
        for name in base.weights.names {
            let t = try base.weights(name)
            guard linear.contains(name) else { dense[name] = t; continue }
            let q = try quantize4bit(try be.floats(t), shape: t.shape, format: .nf4, blockSize: 64, doubleQuant: true)
            dense[name] = try be.tensor(dequantize4bit(q), shape: t.shape)
            packed[name] = Packed4BitWeight(packed: try be.tensor(bytes: q.packed, shape: t.shape, dtype: .nf4(blockSize: 64)),
                                            scale: try be.tensor(q.blockAbsmax(), shape: [q.layout.blockCount]),
                                            codebook: try be.tensor(FourBitCodebook.nf4.values, shape: [16]))
        }
        let others = dense.filter { !linear.contains($0.key) }
        func make(_ w: WeightStore) -> any DiffusionTransformer {
            FluxTransformer(config: config, structure: base.structure, removal: base.removal, weights: w)
        }
        return (make(WeightStore(tensors: others, packed: packed, backend: be, compute: .f32)),
                make(WeightStore(tensors: dense, backend: be, compute: .f32)), fx)
    }

    /// Same weight values, same math: equal within f32 summation-order noise (≤ 1e-5 of the output range).
    @Test func packedForwardMatchesDequantisedWeights() throws {
        let be = CPUBackend()
        let (packed, dense, fx) = try models(be)
        #expect(!packed.weights.packedNames.isEmpty && packed.weights.byteCount < dense.weights.byteCount / 4)
        let a = try be.floats(try packed.forward(fx.inputs)), b = try be.floats(try dense.forward(fx.inputs))
        let range = b.map { abs($0) }.max() ?? 1
        let err = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        #expect(a.count == b.count && err <= 1e-5 * range, "max error \(err), range \(range)")
    }

    @Test func gradientsThroughPackedWeightsThrow() throws {
        let be = CPUBackend()
        let (packed, _, fx) = try models(be)
        let name = try #require(packed.weights.packedNames.first)
        #expect { _ = try packed.weights(name) } throws: { "\($0)".contains(name) }
        let target = try be.zeros(fx.inputs.hiddenStates.shape, dtype: .f32)
        #expect { _ = try packed.mseGradients(fx.inputs, target: target, trainable: { $0.hasSuffix(".bias") }) } throws: { e in
            "\(e)".contains("cannot back-propagate through a 4-bit quantised weight")
        }
    }
}
