"""Write a distillation / training dataset for hprune from image–caption pairs: VAE latents + prompt embeddings.

The official HierarchicalPrune code distils on real images: each step VAE-encodes a batch of (image, caption)
pairs (distil_sd3.py / distil_flux.py → model/builder.py `vae_encode`) and runs the text encoders on the
captions. hprune keeps that data in one file, so this script does both once, the way diffusers does:

  images   RGB, resized to resolution × resolution and scaled to [-1, 1] (data/ye_pop.py: Resize, Normalize(0.5, 0.5))
  latents  z = (vae.encode(x).latent_dist.sample() − shift_factor) · scaling_factor   (builder.py vae_encode;
           `--mode` takes the posterior mode instead of a sample; the sample uses `--seed`)
           SD3 / SD3.5: [N, 16, H/8, W/8], as SD3Transformer2DModel consumes them.
           FLUX: packed 2×2 as FluxPipeline._pack_latents does: [N, (H/16)·(W/16), 64], token (r, c) holding
           channels (ch, dy, dx) in that order — the layout FluxTransformer2DModel consumes.
  text     `pipe.encode_prompt` of each caption (Examples/embed_prompts.py), plus the empty prompt as the
           negative embedding for classifier-free guidance.

Output (Docs/method.md, 'Datasets'): encoder_hidden_states [N, L, J], pooled_projections [N, P], latents,
negative_encoder_hidden_states [1, L, J], negative_pooled_projections [1, P]; metadata latent_height/latent_width
(SD3: H/8, W/8; FLUX: the token grid H/16, W/16), prompts (one per line), vae_scaling_factor, vae_shift_factor.

Input: `--captions pairs.jsonl`, one JSON object per line {"image": "path", "caption": "text"} (paths relative
to the JSONL file), or `--images DIR` where every image `x.jpg|png|webp` has its caption in `x.txt`.

    python Examples/encode_dataset.py --model $SD35_LARGE_TURBO --captions pairs.jsonl \
        --resolution 1024 --out distill-sd35.safetensors
    python Examples/encode_dataset.py --model $FLUX1_SCHNELL --images ./photos \
        --resolution 1024 --out distill-flux.safetensors

Needs the model weights, torch, diffusers and Pillow. A few hundred pairs (e.g. a slice of YE-POP, the official
code's training set) are enough for hprune's short distillation runs; the file grows by 4·16·(res/8)² bytes a pair.
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file

from embed_prompts import encode_negative, encode_prompts, is_flux, load_text_pipeline

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def read_pairs(args):
    """[(image path, caption)] from --captions (JSONL) or --images (sidecar .txt files), in file order."""
    pairs = []
    if args.captions:
        base = os.path.dirname(os.path.abspath(args.captions))
        with open(args.captions, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    o = json.loads(line)
                    pairs.append((os.path.join(base, o["image"]), str(o["caption"]).strip()))
                except (ValueError, KeyError) as e:
                    raise SystemExit(f"{args.captions}:{n}: expected {{\"image\": path, \"caption\": text}} ({e})")
    else:
        for name in sorted(os.listdir(args.images)):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            txt = os.path.join(args.images, stem + ".txt")
            if not os.path.exists(txt):
                raise SystemExit(f"{os.path.join(args.images, name)}: no caption file {txt}")
            with open(txt, encoding="utf-8") as f:
                pairs.append((os.path.join(args.images, name), " ".join(f.read().split())))
    if args.limit:
        pairs = pairs[:args.limit]
    if not pairs:
        raise SystemExit("no image–caption pairs found")
    return pairs


def load_image(path, resolution):
    """[3, res, res] float in [-1, 1]: RGB, resized (not cropped) as data/ye_pop.py does."""
    import numpy as np
    from PIL import Image
    img = Image.open(path).convert("RGB").resize((resolution, resolution), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return x * 2 - 1


def pack_flux(z):
    """[B, C, H, W] → [B, (H/2)(W/2), 4C], exactly FluxPipeline._pack_latents."""
    b, c, h, w = z.shape
    z = z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return z.reshape(b, (h // 2) * (w // 2), c * 4)


def encode_latents(vae, images, flux, sample=True, generator=None):
    """Pipeline-scaled latents of images [B, 3, H, W] in [-1, 1] (float32 on the CPU; FLUX packed)."""
    with torch.no_grad():
        dist = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        z = (z.float() - shift) * vae.config.scaling_factor
    z = z.cpu()
    return pack_flux(z) if flux else z


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="pipeline folder (with vae/, text_encoder*/; transformer/ is not loaded)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--captions", help="JSONL of {\"image\": path, \"caption\": text}")
    src.add_argument("--images", help="folder of images with a .txt caption beside each")
    ap.add_argument("--resolution", type=int, default=1024, help="square image size (multiple of 16)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N pairs")
    ap.add_argument("--mode", action="store_true", help="posterior mode instead of a sample (the official code samples)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the posterior samples")
    ap.add_argument("--batch", type=int, default=4, help="images per VAE pass")
    ap.add_argument("--max-sequence-length", type=int, default=None, help="T5 tokens (default: the pipeline's)")
    ap.add_argument("--vae-dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if args.resolution % 16:
        raise SystemExit(f"--resolution {args.resolution} is not a multiple of 16")

    pairs = read_pairs(args)
    pipe = load_text_pipeline(args.model, args.device, vae=True)
    flux = is_flux(pipe)
    vae = pipe.vae.to(dtype=getattr(torch, args.vae_dtype))
    captions = [c for _, c in pairs]
    enc, pooled = encode_prompts(pipe, captions, args.device, args.max_sequence_length)
    neg_e, neg_p = encode_negative(pipe, args.device, args.max_sequence_length)

    g = torch.Generator(device=args.device).manual_seed(args.seed)
    latents = []
    for i in range(0, len(pairs), args.batch):
        x = torch.stack([load_image(p, args.resolution) for p, _ in pairs[i:i + args.batch]])
        latents.append(encode_latents(vae, x, flux, sample=not args.mode, generator=g))
        print(f"\r{min(i + args.batch, len(pairs))}/{len(pairs)} images encoded", end="", flush=True)
    print()
    latents = torch.cat(latents).contiguous()
    side = args.resolution // (16 if flux else 8)
    tensors = {"encoder_hidden_states": enc, "pooled_projections": pooled, "latents": latents,
               "negative_encoder_hidden_states": neg_e, "negative_pooled_projections": neg_p}
    meta = {"latent_height": str(side), "latent_width": str(side), "prompts": "\n".join(captions),
            "vae_scaling_factor": str(vae.config.scaling_factor),
            "vae_shift_factor": str(getattr(vae.config, "shift_factor", None) or 0.0),
            "latents": "flux-packed-2x2" if flux else "sd3-nchw", "images": "\n".join(p for p, _ in pairs)}
    tmp = args.out + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, args.out)
    print(f"{args.out}: {len(pairs)} pairs, latents {tuple(latents.shape)}, encoder_hidden_states {tuple(enc.shape)}")


if __name__ == "__main__":
    main()
