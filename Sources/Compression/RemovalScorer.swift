// HierarchicalPrune's removal scoring (METHOD.md §1): ΔP of a component is how far the model's outputs move from
// the unpruned model's when that component alone is removed — final sampled latents (fixed per-sample noise)
// compared by MSE, PSNR or cosine, or the velocities of one forward pass per noise level compared by MSE (which is
// also LAPTOP-Diff's one-shot `additive` criterion). The stage keeps the reference outputs and every ΔP in the
// store so an interrupted run resumes (Stages/ScoreStage.swift); this file only computes them.

import ModelSpec
import Models
import TensorCore

public struct RemovalScorer {
    /// What is compared with the reference.
    public enum Readout: Sendable, Hashable {
        /// Final latents of `data.sampler`.
        case samples
        /// Velocities at each of `data.sigmas` on the path from x₀ (clean latents, else the unpruned sample) to
        /// the noise, one forward pass each.
        case velocities
    }

    public var data: ScoringData
    public var readout: Readout

    public init(data: ScoringData, readout: Readout) {
        self.data = data
        self.readout = readout
    }

    /// Values per sample of `outputs` for latents of `valuesPerLatent` values.
    public func valuesPerSample(latent valuesPerLatent: Int) -> Int {
        switch readout {
        case .samples: return valuesPerLatent
        case .velocities: return valuesPerLatent * data.sigmas.count
        }
    }

    /// Per-sample flattened outputs with `extra` removed (nothing: the reference): the final latents, or the
    /// velocities at every σ one after the other.
    public func outputs(removing extra: Removal) throws -> [[Float]] {
        let model = data.model
        switch readout {
        case .samples:
            return try data.sampler.sampleAll(model, data.batches, imgIds: data.imgIds, removing: extra) {
                data.passes.add(data.sampler.forwardPasses(uncond: $0.uncond))
            }
        case .velocities:
            var out: [[Float]] = []
            for i in 0..<data.batches.count {
                try Task.checkCancellation()
                let b = try data.batches.batch(i)
                let x0 = try data.cleanLatents(b)
                var parts: [[[Float]]] = []
                for s in data.sigmas {
                    data.passes.add(1)
                    let v = try model.velocity(atSigma: s, noise: b.noise, clean: x0, cond: b.cond, imgIds: data.imgIds, removing: extra)
                    parts.append(SampleBatches.perSample(try model.backend.floats(v), count: b.count))
                }
                for k in 0..<b.count { out.append(parts.flatMap { $0[k] }) }
            }
            return out
        }
    }

    /// ΔP of removing each address alone: the mean over samples of `distance` between its outputs and the
    /// reference's (computed once).
    public func scores(_ addresses: [ComponentAddress], distance: OutputDistance) throws -> [ComponentAddress: Double] {
        let reference = try outputs(removing: Removal())
        var out: [ComponentAddress: Double] = [:]
        for a in addresses {
            out[a] = distance.mean(try outputs(removing: try Removal([a], in: data.model.structure)), reference: reference)
        }
        return out
    }
}
