// Gradients of mse_loss(model(inputs), target) for every parameter against PyTorch autograd
// (Tests/Fixtures/models/*/train.safetensors), a central finite-difference spot check, and frozen parameters.

import CPUBackend
import TensorFiles
import Foundation
import ModelSpec
import Models
import TensorCore
import Testing

@Suite("Gradients vs PyTorch autograd")
struct GradientTests {
    @Test("every parameter's gradient matches PyTorch", arguments: ["sd35_tiny", "flux_tiny"])
    func allGradients(_ name: String) throws {
        let be = CPUBackend()
        let fx = try Fixture(name, backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        let train = try SafetensorsFile(path: fx.dir + "/train.safetensors")
        let target = try be.tensor(try train.floats("target"), shape: try train.info("target").shape)
        let r = try model.mseGradients(fx.inputs, target: target)
        let refLoss = try train.floats("loss")[0]
        #expect(abs(r.loss - refLoss) <= 1e-5 * abs(refLoss))
        let refNames = train.names.filter { $0.hasPrefix("grad.") }
        #expect(Set(refNames.map { String($0.dropFirst(5)) }) == Set(r.gradients.keys))
        var worst: (String, Float) = ("", 0)
        for n in refNames {
            let p = String(n.dropFirst(5))
            let ref = try train.floats(n)
            guard let g = r.gradients[p] else { Issue.record("no gradient for \(p)"); continue }
            #expect(g.shape == (try train.info(n).shape))
            let err = relativeError(try be.floats(g), ref)
            if err > worst.1 { worst = (p, err) }
            #expect(err <= 1e-4, "\(p): \(err)")
        }
        print("gradients \(name): \(refNames.count) tensors, worst \(worst.0) \(worst.1)")
    }

    @Test("central finite differences agree with the backward (reference backend)")
    func finiteDifferences() throws {
        let be = ReferenceBackend()
        let fx = try Fixture("sd35_tiny", backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        let target = try be.zeros(fx.sampleShape, dtype: .f32)
        let grads = try model.mseGradients(fx.inputs, target: target).gradients
        let probes = [("transformer_blocks.0.attn2.to_q.weight", 5), ("transformer_blocks.2.ff.net.2.bias", 1),
                      ("time_text_embed.timestep_embedder.linear_1.weight", 17), ("transformer_blocks.1.attn.norm_added_k.weight", 3),
                      ("pos_embed.proj.weight", 40)]
        for (name, idx) in probes {
            let original = try model.weights(name)
            var values = try be.floats(original)
            let eps: Float = 1e-2
            func loss(_ delta: Float) throws -> Double {
                var v = values
                v[idx] += delta
                model.weights.set(name, try be.tensor(v, shape: original.shape))
                let out = try model.forward(fx.inputs)
                return try be.floats(out).reduce(0.0) { $0 + Double($1) * Double($1) } / Double(out.count)
            }
            let fd = Float((try loss(eps) - loss(-eps)) / Double(2 * eps))
            model.weights.set(name, original)
            values = []
            let g = try be.floats(try #require(grads[name]))[idx]
            print("finite difference \(name)[\(idx)]: backward \(g), numeric \(fd)")
            #expect(abs(g - fd) <= 2e-2 * max(abs(fd), 1e-3), "\(name)[\(idx)]")
        }
    }

    @Test("frozen parameters get no gradients; the others are unchanged")
    func frozen() throws {
        let be = CPUBackend()
        let fx = try Fixture("flux_tiny", backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        let target = try be.zeros(fx.sampleShape, dtype: .f32)
        let full = try model.mseGradients(fx.inputs, target: target)
        // PWP-style: freeze everything before block 1 (embedders and double block 0).
        let trainable: (String) -> Bool = { n in
            n.hasPrefix("transformer_blocks.1.") || n.hasPrefix("single_transformer_blocks.") || n.hasPrefix("norm_out.") || n.hasPrefix("proj_out.")
        }
        let part = try model.mseGradients(fx.inputs, target: target, trainable: trainable)
        #expect(!part.gradients.isEmpty)
        #expect(part.gradients.keys.allSatisfy(trainable))
        #expect(Set(part.gradients.keys) == Set(full.gradients.keys.filter(trainable)))
        for (n, g) in part.gradients {
            #expect(relativeError(try be.floats(g), try be.floats(full.gradients[n]!)) <= 1e-6, "\(n)")
        }
    }

    @Test("gradients under a removal: removed components' parameters have none")
    func removalGradients() throws {
        let be = CPUBackend()
        let fx = try Fixture("sd35_tiny", backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be, removing: ["blocks.1", "blocks.0.ff"])
        let r = try model.mseGradients(fx.inputs, target: try be.zeros(fx.sampleShape, dtype: .f32))
        #expect(!r.gradients.keys.contains { $0.hasPrefix("transformer_blocks.1.") || $0.hasPrefix("transformer_blocks.0.ff.") })
        #expect(r.gradients["transformer_blocks.0.norm1.linear.weight"] != nil)
    }
}

@Suite("Block features for distillation")
struct FeatureTests {
    @Test("feature loss gradients equal finite differences; traces match across tapes", arguments: ["sd35_tiny", "flux_tiny"])
    func featureLoss(_ name: String) throws {
        let be = ReferenceBackend()
        let fx = try Fixture(name, backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        let blocks = Set(model.structure.blocks.map(\.index).dropLast())
        let teacher = try model.forwardTrace(fx.inputs, capture: blocks)
        #expect(Set(teacher.blocks.keys) == blocks)
        #expect(relativeError(try be.floats(teacher.output), fx.sample) <= 1e-4)
        // loss = Σ_blocks mean(x_i²) over the image stream of the first captured block only (a feature loss).
        let i = blocks.min()!
        func featureLoss() throws -> Double {
            let t = try model.forwardTrace(fx.inputs, capture: [i]).blocks[i]!.image
            return try be.floats(t).reduce(0.0) { $0 + Double($1) * Double($1) } / Double(t.count)
        }
        let r = try model.gradients(fx.inputs, capture: [i]) { trace in
            let x = trace.blocks[i]!.image
            let zero = try be.zeros(x.shape, dtype: .f32)
            return LossGradients(loss: try be.floats(try be.mse(x, zero))[0], output: nil,
                                 blocks: [i: (context: nil, image: try be.mseBackward(x, zero, dloss: 1))])
        }
        // Only parameters feeding block i get gradients; check one by finite differences.
        #expect(!r.gradients.keys.contains { $0.hasPrefix("proj_out.") })
        let pname = model.structure.blocks[i].prefix + ".ff.net.2.bias"
        let original = try model.weights(pname)
        var v = try be.floats(original)
        let eps: Float = 1e-2
        v[0] += eps; model.weights.set(pname, try be.tensor(v, shape: original.shape)); let lp = try featureLoss()
        v[0] -= 2 * eps; model.weights.set(pname, try be.tensor(v, shape: original.shape)); let lm = try featureLoss()
        model.weights.set(pname, original)
        let fd = Float((lp - lm) / Double(2 * eps))
        let g = try be.floats(try #require(r.gradients[pname]))[0]
        #expect(abs(g - fd) <= 2e-2 * max(abs(fd), 1e-3), "\(pname): \(g) vs \(fd)")
    }
}

@Suite("Gradient checkpointing")
struct CheckpointingTests {
    @Test("recomputing blocks in the backward gives the same gradients", arguments: ["sd35_tiny", "flux_tiny"])
    func sameGradients(_ name: String) throws {
        let be = CPUBackend()
        let fx = try Fixture(name, backend: be)
        let model = try loadTransformer(path: fx.dir, backend: be)
        let target = try be.zeros(fx.sampleShape, dtype: .f32)
        let trainable: (String) -> Bool = { !$0.hasPrefix("transformer_blocks.0.") }
        let plain = try model.mseGradients(fx.inputs, target: target, trainable: trainable)
        let ckpt = try model.mseGradients(fx.inputs, target: target, trainable: trainable, checkpointBlocks: true)
        #expect(plain.loss == ckpt.loss)
        #expect(Set(plain.gradients.keys) == Set(ckpt.gradients.keys))
        for (n, g) in plain.gradients {
            #expect(relativeError(try be.floats(try #require(ckpt.gradients[n])), try be.floats(g)) <= 1e-5, "\(n)")
        }
    }
}
