// A few AdamW steps on a tiny model: the loss falls, frozen parameters do not move and have no state.

import CPUBackend
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing

@Suite("AdamW training steps")
struct OptimizerTests {
    @Test("loss falls; frozen parameters untouched and stateless; gradient norm clipped")
    func steps() throws {
        let be = CPUBackend()
        let fx = try Fixture("sd3_tiny", backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        let target = try be.zeros(fx.sampleShape, dtype: .f32)
        let trainable: (String) -> Bool = { $0.hasPrefix("transformer_blocks.1.") || $0.hasPrefix("proj_out.") || $0.hasPrefix("norm_out.") }
        let frozenBefore = try be.floats(try model.weights("transformer_blocks.0.attn.to_q.weight"))
        let opt = AdamWOptimizer(weights: model.weights, config: AdamWConfig(learningRate: 1e-2, weightDecay: 1e-4))
        var losses: [Float] = []
        var norms: [Float] = []
        for _ in 0..<5 {
            let r = try model.mseGradients(fx.inputs, target: target, trainable: trainable)
            losses.append(r.loss)
            norms.append(try opt.step(r.gradients, maxGradNorm: 1.0))
        }
        print("adamw losses \(losses), grad norms \(norms)")
        #expect(losses.last! < losses.first!)
        #expect(norms.allSatisfy { $0 > 0 })
        #expect(opt.stateNames.allSatisfy(trainable))
        #expect(!opt.stateNames.isEmpty)
        #expect(try be.floats(try model.weights("transformer_blocks.0.attn.to_q.weight")) == frozenBefore)
        // The fixture files on disk are untouched (weights were mapped read-only and copied before updating).
        let fresh = try loadTransformer(path: fx.dir, backend: be)
        #expect(relativeError(try be.floats(try fresh.forward(fx.inputs)), fx.sample) <= 1e-4)
    }
}
