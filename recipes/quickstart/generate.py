"""Data for recipes/quickstart.yaml: a tiny SD3.5-style transformer config and a small class-conditioned
latent dataset ("shapes"), so the quickstart trains its own teacher and compresses it with nothing to download.

Eight classes; each is a prompt embedding (4 tokens x 32, fixed random per class) and a pooled vector (32).
Each sample's latent (4 x 8 x 8) is a smooth class-specific pattern — a Gaussian blob at a class-dependent
position in channel (class % 4), plus class-dependent stripes — with a little per-sample jitter, so the model
must use the prompt to denoise. Run once (outputs are committed; the build and tests never need Python):

    /tmp/ref/bin/python recipes/quickstart/generate.py
"""
import json
import math
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES, PER_CLASS, TOKENS, JOINT, POOLED, C, H = 8, 8, 4, 32, 32, 4, 8


def main():
    g = torch.Generator().manual_seed(1234)
    class_tokens = torch.randn(CLASSES, TOKENS, JOINT, generator=g)
    class_pooled = torch.randn(CLASSES, POOLED, generator=g)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(H, dtype=torch.float32), indexing="ij")
    enc, pooled, latents, labels = [], [], [], []
    for k in range(CLASSES):
        cy, cx = 1.5 + 5.0 * ((k * 3) % CLASSES) / CLASSES, 1.5 + 5.0 * ((k * 5) % CLASSES) / CLASSES
        freq = 0.5 + 0.25 * (k % 4)
        for _ in range(PER_CLASS):
            jy, jx = (torch.rand(2, generator=g) - 0.5) * 0.6
            blob = torch.exp(-((ys - cy - jy) ** 2 + (xs - cx - jx) ** 2) / 3.0)
            z = torch.zeros(C, H, H)
            z[k % C] = 2.0 * blob - 0.5
            z[(k + 1) % C] = 0.6 * torch.sin(freq * xs + (k // 4) * math.pi / 2)
            z += 0.05 * torch.randn(C, H, H, generator=g)
            enc.append(class_tokens[k] + 0.02 * torch.randn(TOKENS, JOINT, generator=g))
            pooled.append(class_pooled[k])
            latents.append(z)
            labels.append(k)
    save_file({"encoder_hidden_states": torch.stack(enc).contiguous(),
               "pooled_projections": torch.stack(pooled).contiguous(),
               "latents": torch.stack(latents).contiguous(),
               "labels": torch.tensor(labels, dtype=torch.int64)},
              os.path.join(HERE, "shapes.safetensors"),
              metadata={"latent_height": str(H), "latent_width": str(H),
                        "description": "quickstart: 8 classes x 8 samples of 4x8x8 latents with class prompts"})
    config = {"_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.42.1", "sample_size": H, "patch_size": 2,
              "in_channels": C, "out_channels": C, "num_layers": 8, "attention_head_dim": 16, "num_attention_heads": 2,
              "joint_attention_dim": JOINT, "caption_projection_dim": 32, "pooled_projection_dim": POOLED,
              "pos_embed_max_size": H, "qk_norm": "rms_norm", "dual_attention_layers": []}
    with open(os.path.join(HERE, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
