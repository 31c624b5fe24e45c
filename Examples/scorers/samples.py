"""Shared by hprune's example scorers: read a samples file, decode its latents to images, write the score.

A scorer runs in one of three ways:
  - as a `score` stage's `scorer` (`metric: external`): hprune sets HPRUNE_SAMPLES (one file), HPRUNE_VARIANT,
    HPRUNE_OUT, HPRUNE_DATASET for every variant; the scorer writes $HPRUNE_OUT/score.json = {"score": P, …};
  - in a `command` stage on an `evaluate` stage's `latents` output (`latents: true`), given as the input named
    `samples` (HPRUNE_IN_SAMPLES, a folder of <model>.safetensors): it writes $HPRUNE_OUT/scores.json =
    {"scores": {model: P}, "details": {model: {…}}} — declare `outputs: [scores.json]`;
  - by hand: `--samples FILE_OR_FOLDER --out result.json`. The samples file (safetensors) holds `latents` — SD3 [N, 16, H, W];
FLUX [N, h*w, 64] packed 2x2 as FluxPipeline does — in the pipeline's scaled latent space, with metadata
`layout` (sd3-nchw | flux-packed-2x2), `latent_height`, `latent_width` (FLUX: the token grid) and `prompts`.
Images are decoded as diffusers' pipelines do: x = vae.decode(z / scaling_factor + shift_factor), then
(x / 2 + 0.5).clamp(0, 1) (VaeImageProcessor.postprocess).
"""
import argparse
import json
import os

import torch
from safetensors import safe_open


def arguments(description):
    """The common options; every value defaults from hprune's environment."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", default=os.environ.get("HPRUNE_SAMPLES") or os.environ.get("HPRUNE_IN_SAMPLES"),
                    help="samples safetensors, or a folder of them (default: $HPRUNE_SAMPLES, else $HPRUNE_IN_SAMPLES)")
    ap.add_argument("--out", default=None, help="where to write the JSON (default: $HPRUNE_OUT/score.json, for a folder scores.json)")
    ap.add_argument("--vae", required=True, help="the pipeline's vae/ folder (e.g. $SD35_LARGE_TURBO/vae)")
    ap.add_argument("--prompts", default=None, help="text file, one prompt per sample (default: the samples' metadata)")
    ap.add_argument("--save-images", default=None, help="folder to keep the decoded PNGs in (per variant)")
    ap.add_argument("--batch", type=int, default=4, help="latents per VAE decode")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return ap


def read_samples(path, prompts_file=None):
    """(latents tensor, metadata dict, prompts list)."""
    if not path:
        raise SystemExit("no samples file: pass --samples or run inside an hprune score stage (HPRUNE_SAMPLES)")
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
        z = f.get_tensor("latents").float()
    if prompts_file:
        prompts = [l.strip() for l in open(prompts_file, encoding="utf-8") if l.strip()]
    else:
        prompts = meta.get("prompts", "").split("\n") if meta.get("prompts") else []
    if len(prompts) != z.shape[0]:
        raise SystemExit(f"{path}: {z.shape[0]} samples but {len(prompts)} prompts; embed the prompts with "
                         "Examples/embed_prompts.py (it stores them) or pass --prompts")
    return z, meta, prompts


def unpack_flux(z, h, w):
    """[B, h*w, 4C] → [B, C, 2h, 2w], exactly FluxPipeline._unpack_latents."""
    b, n, c4 = z.shape
    z = z.view(b, h, w, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return z.reshape(b, c4 // 4, h * 2, w * 2)


def decode(z, meta, vae_path, device, batch=4):
    """PIL images of the latents, decoded with the pipeline's VAE."""
    from diffusers import AutoencoderKL
    from PIL import Image
    vae = AutoencoderKL.from_pretrained(vae_path, torch_dtype=torch.float32).to(device).eval()
    if meta.get("layout") == "flux-packed-2x2":
        z = unpack_flux(z, int(meta["latent_height"]), int(meta["latent_width"]))
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    images = []
    with torch.no_grad():
        for i in range(0, z.shape[0], batch):
            x = vae.decode(z[i:i + batch].to(device) / vae.config.scaling_factor + shift).sample
            x = (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
            images += [Image.fromarray((im * 255).round().astype("uint8")) for im in x]
    return images


def save_images(images, folder, variant):
    if folder:
        d = os.path.join(folder, variant)
        os.makedirs(d, exist_ok=True)
        for i, im in enumerate(images):
            im.save(os.path.join(d, f"{i:05d}.png"))


def write_json(doc, out, default_name):
    """Writes `doc` to `out`, else $HPRUNE_OUT/<default_name> (temp file + rename)."""
    if out is None:
        if not os.environ.get("HPRUNE_OUT"):
            raise SystemExit("no output: pass --out or run inside an hprune stage (HPRUNE_OUT)")
        out = os.path.join(os.environ["HPRUNE_OUT"], default_name)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, out)


def run(args, score_one):
    """Scores the samples file (→ score.json) or every file of a samples folder (→ scores.json).

    `score_one(path) -> (P, details dict)`.
    """
    if not args.samples:
        raise SystemExit("no samples: pass --samples, or run as an hprune scorer (HPRUNE_SAMPLES) or in a command "
                         "stage with an input named `samples` (HPRUNE_IN_SAMPLES)")
    if os.path.isdir(args.samples):
        files = sorted(f for f in os.listdir(args.samples) if f.endswith(".safetensors"))
        if not files:
            raise SystemExit(f"{args.samples}: no .safetensors samples files")
        scores, details = {}, {}
        for f in files:
            name = f[:-len(".safetensors")]
            scores[name], details[name] = score_one(os.path.join(args.samples, f))
            print(f"{name}: score {scores[name]:.5f}")
        write_json({"scores": scores, "details": details}, args.out, "scores.json")
    else:
        p, details = score_one(args.samples)
        write_json({"score": float(p), **details}, args.out, "score.json")
        print(f"{os.environ.get('HPRUNE_VARIANT', 'samples')}: score {p:.5f}")
