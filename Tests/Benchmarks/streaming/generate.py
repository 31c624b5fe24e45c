#!/usr/bin/env python3
# Writes a real-shape diffusers transformer folder with random bf16 weights, streaming one tensor at a time (so it
# needs little memory): the input of Tests/Benchmarks/streaming/run.sh, which measures hprune's peak memory while it
# quantises and exports it. Not a fixture: the output is 16-24 GB; delete it after the run.
#
#   /root/venv/bin/python Tests/Benchmarks/streaming/generate.py sd35-large /tmp/sd35l     # 8.1B params, 16.3 GB
#   /root/venv/bin/python Tests/Benchmarks/streaming/generate.py flux-dev   /tmp/fluxdev   # 11.9B params, 23.8 GB
#
# Shapes come from diffusers itself (the model is built on the meta device from the public configs below), so the
# folder is exactly what `from_pretrained` expects.
import json
import os
import struct
import sys

import torch
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

CONFIGS = {
    "sd35-large": (SD3Transformer2DModel, dict(
        sample_size=128, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=64, num_attention_heads=38,
        joint_attention_dim=4096, caption_projection_dim=2432, pooled_projection_dim=2048, out_channels=16,
        pos_embed_max_size=192, dual_attention_layers=(), qk_norm="rms_norm")),
    "flux-dev": (FluxTransformer2DModel, dict(
        patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
        axes_dims_rope=(16, 56, 56))),
}


def main():
    name, out = sys.argv[1], sys.argv[2]
    cls, cfg = CONFIGS[name]
    with torch.device("meta"):
        model = cls(**cfg)
    os.makedirs(out, exist_ok=False)
    model.save_config(out)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    names = sorted(shapes)
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for k in names:
        n = 2
        for d in shapes[k]:
            n *= d
        header[k] = {"dtype": "BF16", "shape": shapes[k], "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    g = torch.Generator().manual_seed(0)
    path = os.path.join(out, "diffusion_pytorch_model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for k in names:
            shape = shapes[k]
            scale = 1 / (shape[1] if len(shape) >= 2 else 1) ** 0.5
            flat = torch.Size(shape).numel()
            for at in range(0, flat, 1 << 24):                     # 16M elements (32 MB bf16) at a time
                t = (torch.randn(min(1 << 24, flat - at), generator=g) * scale).to(torch.bfloat16)
                f.write(t.view(torch.uint16).numpy().tobytes())
    params = sum(torch.Size(s).numel() for s in shapes.values())
    print(f"wrote {out}: {len(names)} tensors, {params / 1e9:.2f}B params, {os.path.getsize(path) / 1e9:.1f} GB")


if __name__ == "__main__":
    main()
