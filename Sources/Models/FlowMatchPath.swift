// The straight flow-matching path between clean latents x₀ and noise: the point x_t = σ·noise + (1−σ)·x₀ at noise
// level σ, the velocity target v = noise − x₀, and a transformer's inputs and velocity prediction there. One
// forward pass at σ is how the single-pass criteria read a model without sampling: `score`'s velocity metric,
// KOALA's block cosine and Diff-Pruning's Taylor importance (Compression), and `evaluate`'s task loss.

import ModelSpec
import TensorCore

public enum FlowMatchPath {
    /// x_t = σ·noise + (1−σ)·x₀, shaped like `noise` (B,…).
    public static func point(noise: Tensor, clean x0: Tensor, sigma: Float, backend be: any Backend) throws -> Tensor {
        try be.add(try be.scale(noise, sigma), try be.scale(x0, 1 - sigma))
    }

    /// The velocity the model is trained to predict along the path, v = noise − x₀, shaped like `noise` (B,…).
    public static func velocityTarget(noise: Tensor, clean x0: Tensor, backend be: any Backend) throws -> Tensor {
        try be.add(noise, try be.scale(x0, -1))
    }
}

extension DiffusionTransformer {
    /// The forward arguments at noise level σ on the path from `x0` to `noise` (both (B,…), the model's latent
    /// layout): hidden states x_t, the model's timestep of σ for every sample, and `cond`'s text conditioning.
    /// `imgIds`: FLUX image position ids (Li·3); nil for SD3.
    public func inputs(atSigma sigma: Float, noise: Tensor, clean x0: Tensor, cond: Conditioning,
                       imgIds: [Float]?) throws -> TransformerInputs {
        TransformerInputs(hiddenStates: try FlowMatchPath.point(noise: noise, clean: x0, sigma: sigma, backend: backend),
                          encoderHiddenStates: cond.encoderHiddenStates, pooledProjections: cond.pooledProjections,
                          timestep: Array(repeating: timestep(sigma: sigma), count: noise.shape[0]),
                          guidance: cond.guidance, imgIds: imgIds, txtIds: cond.txtIds)
    }

    /// The velocity prediction at σ on the path from `x0` to `noise`, shaped like `noise`; `extra` removes further
    /// components for this pass only.
    public func velocity(atSigma sigma: Float, noise: Tensor, clean x0: Tensor, cond: Conditioning, imgIds: [Float]?,
                         removing extra: Removal = Removal()) throws -> Tensor {
        try forward(try inputs(atSigma: sigma, noise: noise, clean: x0, cond: cond, imgIds: imgIds), removing: extra)
    }
}
