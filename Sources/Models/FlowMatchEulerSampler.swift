// Flow-matching Euler sampling over any backend: x_{k+1} = x_k + (σ_{k+1} − σ_k)·v(x_k, σ_k) on ModelSpec's
// (shifted) sigma schedule, optional classifier-free guidance on a [uncond, cond] batch, and initial noise from
// the backend's Philox generator so a seed gives the same latents on every backend.

import ModelSpec
import TensorCore

/// Text conditioning of a sampling run (one batch).
public struct Conditioning: @unchecked Sendable {
    /// (B,Lt,J)
    public var encoderHiddenStates: Tensor
    /// (B,P)
    public var pooledProjections: Tensor
    /// FLUX guidance-distilled scale per batch element (models with `guidance_embeds`).
    public var guidance: [Float]?
    /// FLUX text position ids (Lt·3); zeros when nil.
    public var txtIds: [Float]?

    public init(encoderHiddenStates: Tensor, pooledProjections: Tensor, guidance: [Float]? = nil, txtIds: [Float]? = nil) {
        self.encoderHiddenStates = encoderHiddenStates
        self.pooledProjections = pooledProjections
        self.guidance = guidance
        self.txtIds = txtIds
    }
}

/// FLUX image position ids for an h×w token grid: (h·w, 3) rows (0, row, col), row-major.
public func fluxImageIds(height h: Int, width w: Int) -> [Float] {
    var ids: [Float] = []
    ids.reserveCapacity(h * w * 3)
    for r in 0..<h { for c in 0..<w { ids += [0, Float(r), Float(c)] } }
    return ids
}

/// Euler sampler for flow-matching transformers (diffusers `FlowMatchEulerDiscreteScheduler.step`).
///
///     let sampler = FlowMatchEulerSampler(schedule: FlowMatchSchedule(.sd35LargeTurbo), steps: 4)
///     let x0 = try sampler.sample(model, latentShape: [1, 16, 128, 128], cond: cond, seed: 0)
public struct FlowMatchEulerSampler: Sendable {
    public var schedule: FlowMatchSchedule
    public var steps: Int
    /// Classifier-free guidance scale; applied when > 1 and an unconditional batch is given (as diffusers).
    public var guidanceScale: Float
    /// Resolution-dependent shift for schedulers with dynamic shifting.
    public var mu: Double?

    public init(schedule: FlowMatchSchedule, steps: Int, guidanceScale: Float = 1, mu: Double? = nil) {
        self.schedule = schedule
        self.steps = steps
        self.guidanceScale = guidanceScale
        self.mu = mu
    }

    /// The `steps` sigmas followed by the terminal one.
    public func sigmas() throws -> [Float] { try schedule.sigmas(steps: steps, mu: mu) }

    /// Initial noise: standard normal from the backend's Philox stream (element i = normal(seed, i)).
    public static func noise(_ backend: any Backend, shape: [Int], seed: UInt64) throws -> Tensor {
        try backend.randomNormal(shape, seed: seed, offset: 0)
    }

    /// Samples from noise drawn with `seed`. latentShape: SD3 (B,C,H,W); FLUX (B,Li,C) with `imgIds` (Li·3).
    public func sample(_ model: any DiffusionTransformer, latentShape: [Int], cond: Conditioning, uncond: Conditioning? = nil,
                       imgIds: [Float]? = nil, seed: UInt64, removing extra: Removal = Removal()) throws -> Tensor {
        try sample(model, from: try Self.noise(model.backend, shape: latentShape, seed: seed), cond: cond, uncond: uncond,
                   imgIds: imgIds, removing: extra)
    }

    /// Integrates from the given initial latents x (σ = sigmas[0]) to σ = the terminal sigma.
    public func sample(_ model: any DiffusionTransformer, from x0: Tensor, cond: Conditioning, uncond: Conditioning? = nil,
                       imgIds: [Float]? = nil, removing extra: Removal = Removal()) throws -> Tensor {
        let be = model.backend
        let sig = try sigmas()
        let b = x0.shape[0]
        let cfg = guidanceScale > 1 ? uncond : nil
        // The batch the model sees: [uncond; cond] with CFG, else cond.
        let ehs = try cfg.map { try be.concat([$0.encoderHiddenStates, cond.encoderHiddenStates], axis: 0) } ?? cond.encoderHiddenStates
        let pooled = try cfg.map { try be.concat([$0.pooledProjections, cond.pooledProjections], axis: 0) } ?? cond.pooledProjections
        let guidance: [Float]? = cond.guidance.map { g in cfg.map { ($0.guidance ?? g) + g } ?? g }
        let factor = cfg == nil ? 1 : 2
        var x = x0
        for k in 0..<steps {
            let t = model.timestep(sigma: sig[k])
            let xin = factor == 2 ? try be.concat([x, x], axis: 0) : x
            let inputs = TransformerInputs(hiddenStates: xin, encoderHiddenStates: ehs, pooledProjections: pooled,
                                           timestep: Array(repeating: t, count: b * factor), guidance: guidance,
                                           imgIds: imgIds, txtIds: cond.txtIds)
            var v = try model.forward(inputs, removing: extra)
            if factor == 2 {
                let vu = try be.slice(v, axis: 0, start: 0, length: b), vc = try be.slice(v, axis: 0, start: b, length: b)
                v = try be.add(vu, try be.scale(try be.add(vc, try be.scale(vu, -1)), guidanceScale))   // vu + g·(vc − vu)
            }
            x = try be.add(x, try be.scale(v, sig[k + 1] - sig[k]))
        }
        return x
    }
}
