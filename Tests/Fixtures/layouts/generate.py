"""Synthetic "layout" models and calibration sets for validating and planning the paper recipes in CI.

Each model has the real architecture's layout (block counts, key names, qk-norm, guidance embedding or not)
with tiny dimensions and random weights, so `hprune validate/plan recipes/paper/*.yaml` exercises the same
structure users with the real weights get. Written as diffusers folders (`<name>/transformer/`), plus a
calibration file per model in hprune's dataset format (Docs/method.md, 'Datasets'): encoder_hidden_states,
pooled_projections, `latents` (random stand-ins for VAE latents, in the layout the model consumes: SD3
[N, C, H, W], FLUX packed [N, h*w, C]; the paper recipes distil with `x0: latents`), one empty-prompt
embedding (negative_encoder_hidden_states [1, L, J], negative_pooled_projections [1, P]) and the
latent_height/latent_width metadata. Run once with diffusers installed; outputs are committed:

    /root/venv/bin/python Tests/Fixtures/layouts/generate.py
"""
import json
import os

import torch
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def save(model, name, joint, pooled, latent_hw, latent_shape, tokens=6, count=2, seed=0):
    folder = os.path.join(HERE, name, "transformer")
    model.to(torch.bfloat16).save_pretrained(folder)
    g = torch.Generator().manual_seed(seed + 1)
    embeds = {
        "encoder_hidden_states": torch.randn(count, tokens, joint, generator=g),
        "pooled_projections": torch.randn(count, pooled, generator=g),
    }
    # Drawn after the embeddings, so those stay what they were before latents were added.
    embeds["latents"] = torch.randn(count, *latent_shape, generator=g)
    embeds["negative_encoder_hidden_states"] = torch.randn(1, tokens, joint, generator=g)
    embeds["negative_pooled_projections"] = torch.randn(1, pooled, generator=g)
    save_file(embeds, os.path.join(HERE, name, "calibration.safetensors"),
              metadata={"latent_height": str(latent_hw), "latent_width": str(latent_hw),
                        "description": "random embeddings, latents and empty-prompt embedding with the model's widths (layout checks only)"})


def main():
    torch.manual_seed(0)
    # SD3.5 Large Turbo layout: 38 layers, qk rms_norm, no dual attention.
    sd35 = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=4,
                                 num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=8,
                                 pooled_projection_dim=8, out_channels=16, pos_embed_max_size=16,
                                 qk_norm="rms_norm", dual_attention_layers=())
    save(randomise(sd35, 1), "sd35_large_turbo", joint=16, pooled=8, latent_hw=8, latent_shape=(16, 8, 8))
    # FLUX.1-schnell layout: 19 double + 38 single blocks, 3-axis RoPE, no guidance embedding.
    flux = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=19, num_single_layers=38,
                                  attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                  pooled_projection_dim=8, guidance_embeds=False, axes_dims_rope=(2, 2, 4))
    save(randomise(flux, 2), "flux1_schnell", joint=16, pooled=8, latent_hw=8, latent_shape=(8 * 8, 16))
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump({"sd35_large_turbo": "SD3Transformer2DModel, 38 layers", "flux1_schnell": "FluxTransformer2DModel, 19+38 blocks"},
                  f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
