"""Write a calibration / training dataset for hprune from text prompts, with a model's own text encoders.

hprune works on transformer inputs: prompt embeddings, not text (DESIGN: the text encoders are not compressed).
This script runs the pipeline's text encoders once and saves what the transformer sees, in hprune's dataset
format: `encoder_hidden_states` [N, L, D_joint], `pooled_projections` [N, D_pooled], and the latent size in the
metadata (`latent_height`, `latent_width`). Needs the model weights, torch and diffusers:

    python Examples/embed_prompts.py --model $SD35_LARGE_TURBO --prompts prompts.txt \
        --resolution 1024 --out calib-sd35.safetensors
    python Examples/embed_prompts.py --model $FLUX1_SCHNELL --prompts prompts.txt \
        --resolution 1024 --out calib-flux.safetensors

prompts.txt holds one prompt per line (the paper calibrates on a few dozen diverse prompts).
"""
import argparse

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="pipeline folder (with transformer/, text_encoder*/, vae/)")
    ap.add_argument("--prompts", required=True, help="text file, one prompt per line")
    ap.add_argument("--resolution", type=int, default=1024, help="image size the latents are for")
    ap.add_argument("--max-sequence-length", type=int, default=None, help="T5 tokens (default: the pipeline's)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    prompts = [line.strip() for line in open(args.prompts, encoding="utf-8") if line.strip()]
    if not prompts:
        raise SystemExit(f"{args.prompts}: no prompts")
    pipe = DiffusionPipeline.from_pretrained(args.model, transformer=None, vae=None, torch_dtype=torch.bfloat16)
    pipe.to(args.device)
    kwargs = {} if args.max_sequence_length is None else {"max_sequence_length": args.max_sequence_length}
    is_sd3 = "StableDiffusion3" in type(pipe).__name__
    enc, pooled = [], []
    with torch.no_grad():
        for p in prompts:
            extra = {"prompt_3": p, "do_classifier_free_guidance": False} if is_sd3 else {}
            out = pipe.encode_prompt(prompt=p, prompt_2=p, device=args.device, num_images_per_prompt=1, **extra, **kwargs)
            # SD3: (prompt_embeds, negative, pooled, negative_pooled); FLUX: (prompt_embeds, pooled, text_ids).
            if len(out) == 4:
                e, p_ = out[0], out[2]
            else:
                e, p_ = out[0], out[1]
            enc.append(e[0].float().cpu())
            pooled.append(p_[0].float().cpu())
    # Latent grid: VAE downsamples 8x; FLUX packs 2x2 latent patches into tokens (hprune takes the packed grid).
    down = 8 * (2 if "Flux" in type(pipe).__name__ else 1)
    side = args.resolution // down
    save_file({"encoder_hidden_states": torch.stack(enc).contiguous(), "pooled_projections": torch.stack(pooled).contiguous()},
              args.out, metadata={"latent_height": str(side), "latent_width": str(side), "prompts": "\n".join(prompts)})
    print(f"{args.out}: {len(prompts)} prompts, encoder_hidden_states {tuple(torch.stack(enc).shape)}, latent {side}x{side}")


if __name__ == "__main__":
    main()
