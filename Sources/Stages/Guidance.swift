// `sampling.guidance` of the score and evaluate stages, resolved against the model and the dataset: the
// classifier-free guidance scale of SD3 models (v = v_u + g·(v_c − v_u) on the dataset's negative embedding, as
// diffusers' StableDiffusion3Pipeline; on when g > 1) or the embedded guidance value of FLUX models that have one;
// and the dataset's samples as `SampleBatches` with that guidance, for the scorers and evaluation in Compression.

import ModelSpec
import Models
import Scheduler
import TensorCore

/// How one stage's sampling uses its `guidance` value.
struct SamplingGuidance {
    /// SD3 classifier-free guidance scale; 1 = off (diffusers: `do_classifier_free_guidance = guidance_scale > 1`).
    var cfgScale: Float = 1
    /// FLUX models with `guidance_embeds`: the guidance value fed to the model.
    var fluxGuidance: Float?

    var usesCFG: Bool { cfgScale > 1 }

    /// - Throws: a located failure when an SD3 model is asked for guidance > 1 but the dataset has no negative
    ///   (empty-prompt) embedding, naming the scripts that write one.
    init(_ guidance: Float, config: ModelConfig, data: PromptDataset, ctx: StageContext) throws {
        switch config {
        case .sd3:
            guard guidance > 1 else { return }
            guard data.negative != nil else {
                throw ctx.failure("'sampling.guidance' \(guidance) > 1 is classifier-free guidance, which needs the unconditional embedding, but the dataset \(data.source) has no 'negative_encoder_hidden_states' / 'negative_pooled_projections'; "
                                  + "write them (the empty prompt's embedding) with `python Examples/embed_prompts.py` or `Examples/encode_dataset.py`, or use guidance 0 or 1 (no CFG, as Turbo models sample)")
            }
            cfgScale = guidance
        case .flux(let c):
            if c.guidanceEmbeds { fluxGuidance = guidance }
        }
    }

    /// The Euler sampler with this guidance.
    func sampler(steps: Int, shift: Double) -> FlowMatchEulerSampler {
        FlowMatchEulerSampler(schedule: FlowMatchSchedule(FlowMatchSchedulerConfig(shift: shift)), steps: steps, guidanceScale: cfgScale)
    }

    /// Conditional and (with CFG) unconditional conditioning of samples `range`.
    func conditioning(_ data: PromptDataset, _ range: Range<Int>, backend: any Backend) throws -> (cond: Conditioning, uncond: Conditioning?) {
        let cond = try data.conditioning(range, backend: backend, guidance: fluxGuidance)
        return (cond, usesCFG ? try data.negativeConditioning(range, backend: backend) : nil)
    }

    /// The dataset's samples in batches of `size`: the fixed per-sample noise of `seed` (sample i's noise does not
    /// depend on the batching), the conditioning with this guidance, and with `latents` the dataset's clean
    /// latents where it has them. Built on demand, one batch at a time.
    func batches(_ data: PromptDataset, size: Int, sampleShape: [Int], seed: UInt64, backend: any Backend,
                 latents: Bool) -> SampleBatches {
        let ranges = data.batches(size: size)
        return SampleBatches(sizes: ranges.map(\.count)) { i in
            let range = ranges[i]
            let (cond, uncond) = try conditioning(data, range, backend: backend)
            return SampleBatch(noise: try PromptDataset.noise(range, sampleShape: sampleShape, seed: seed, backend: backend),
                               cond: cond, uncond: uncond,
                               latents: latents && data.latents != nil ? try data.latents(range, backend: backend) : nil)
        }
    }
}
