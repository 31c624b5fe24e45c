#!/usr/bin/env python3
# Classifier-free guidance fixture: diffusers' own StableDiffusion3Pipeline (output_type="latent", the committed
# tiny transformer, precomputed prompt embeddings, no text encoders or VAE) sampling with guidance_scale > 1, so
# hprune's guided sampler is held to the pipeline itself, not to a re-implementation. Beside it, the same result
# by an explicit loop (pipeline.py: cat([uncond, cond]) → v_u + g·(v_c − v_u) → scheduler.step) as a cross-check.
# Run once: /root/venv/bin/python Tests/Fixtures/models/generate_cfg.py  (diffusers 0.42.1)
#
# Writes <model>/cfg.safetensors (f32) for sd3_tiny and sd35_tiny:
#   noise [2, C, H, W]                         the initial latents (pipeline arg `latents`)
#   encoder_hidden_states [2, L, J], pooled_projections [2, P]     prompt_embeds, pooled_prompt_embeds
#   negative_encoder_hidden_states [1, L, J], negative_pooled_projections [1, P]   one negative, used for both
#   sample [2, C, H, W]                        the pipeline's output latents
#   metadata: guidance_scale, steps, shift

import os

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
GUIDANCE, STEPS, SHIFT = 4.5, 3, 3.0


def fixture(name, seed):
    model = SD3Transformer2DModel.from_pretrained(os.path.join(HERE, name)).float().eval()
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(2, cfg.in_channels, 16, 12, generator=g)
    ehs = torch.randn(2, 5, cfg.joint_attention_dim, generator=g)
    pooled = torch.randn(2, cfg.pooled_projection_dim, generator=g)
    neg_e = torch.randn(1, 5, cfg.joint_attention_dim, generator=g)
    neg_p = torch.randn(1, cfg.pooled_projection_dim, generator=g)

    scheduler = FlowMatchEulerDiscreteScheduler(shift=SHIFT)
    pipe = StableDiffusion3Pipeline(transformer=model, scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None,
                                    text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = pipe(prompt_embeds=ehs, pooled_prompt_embeds=pooled,
                   negative_prompt_embeds=neg_e.expand(2, -1, -1), negative_pooled_prompt_embeds=neg_p.expand(2, -1),
                   latents=noise.clone(), height=16 * pipe.vae_scale_factor, width=12 * pipe.vae_scale_factor,
                   num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="latent", return_dict=False)[0]

        # The same by hand (StableDiffusion3Pipeline.__call__'s denoising loop).
        sch = FlowMatchEulerDiscreteScheduler(shift=SHIFT)
        sch.set_timesteps(STEPS)
        x = noise.clone()
        for t in sch.timesteps:
            v = model(hidden_states=torch.cat([x, x]), timestep=t.expand(4),
                      encoder_hidden_states=torch.cat([neg_e.expand(2, -1, -1), ehs]),
                      pooled_projections=torch.cat([neg_p.expand(2, -1), pooled]), return_dict=False)[0]
            vu, vc = v.chunk(2)
            x = sch.step(vu + GUIDANCE * (vc - vu), t, x, return_dict=False)[0]
    err = (out - x).abs().max().item()
    assert err <= 1e-5 * out.abs().max().item(), (name, err)
    save_file({k: v.contiguous().float() for k, v in dict(noise=noise, encoder_hidden_states=ehs, pooled_projections=pooled,
                                                          negative_encoder_hidden_states=neg_e,
                                                          negative_pooled_projections=neg_p, sample=out).items()},
              os.path.join(HERE, name, "cfg.safetensors"),
              metadata={"guidance_scale": str(GUIDANCE), "steps": str(STEPS), "shift": str(SHIFT)})
    print(name, "cfg sample max", out.abs().max().item(), "loop vs pipeline", err)


if __name__ == "__main__":
    fixture("sd3_tiny", 201)
    fixture("sd35_tiny", 202)
