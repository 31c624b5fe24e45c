"""Write a calibration dataset for hprune from text prompts, with a model's own text encoders.

hprune works on transformer inputs: prompt embeddings, not text (DESIGN: the text encoders are not compressed).
This script runs the pipeline's text encoders once (as diffusers' pipelines call them: `pipe.encode_prompt`) and
saves what the transformer sees, in hprune's dataset format (Docs/method.md, 'Datasets'):

    encoder_hidden_states           [N, L, D_joint]
    pooled_projections              [N, D_pooled]
    negative_encoder_hidden_states  [1, L, D_joint]  the empty prompt "" (classifier-free guidance, `guidance > 1`)
    negative_pooled_projections     [1, D_pooled]
    metadata: latent_height, latent_width (SD3: latent pixels; FLUX: the packed token grid), prompts

No `latents`: a prompt-only set is for scoring and evaluation. To distil (the paper recipes set `x0: latents`),
encode image–caption pairs with Examples/encode_dataset.py instead. Needs the model weights, torch, diffusers:

    python Examples/embed_prompts.py --model $SD35_LARGE_TURBO --prompts prompts.txt \
        --resolution 1024 --out calib-sd35.safetensors
    python Examples/embed_prompts.py --model $FLUX1_SCHNELL --prompts prompts.txt \
        --resolution 1024 --out calib-flux.safetensors

prompts.txt holds one prompt per line (the paper calibrates on a few dozen diverse prompts).
"""
import argparse

import torch
from safetensors.torch import save_file


def load_text_pipeline(model, device, dtype=torch.bfloat16, vae=False):
    """The pipeline with its text encoders (and the VAE when `vae`), without the transformer."""
    from diffusers import DiffusionPipeline
    kwargs = {"transformer": None} if vae else {"transformer": None, "vae": None}
    pipe = DiffusionPipeline.from_pretrained(model, torch_dtype=dtype, **kwargs)
    return pipe.to(device)


def is_flux(pipe):
    return "Flux" in type(pipe).__name__


def encode_prompts(pipe, prompts, device, max_sequence_length=None, batch=8):
    """(encoder_hidden_states [N, L, J], pooled_projections [N, P]) in float32, as the pipeline computes them.

    SD3 (StableDiffusion3Pipeline.encode_prompt): CLIP-L + CLIP-G penultimate states padded to 4096 and
    concatenated with T5 on the sequence axis; pooled = [CLIP-L pooled, CLIP-G pooled]. FLUX
    (FluxPipeline.encode_prompt): T5 states; pooled = CLIP-L pooled. Every prompt goes to every encoder.
    """
    kwargs = {} if max_sequence_length is None else {"max_sequence_length": max_sequence_length}
    enc, pooled = [], []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            p = prompts[i:i + batch]
            if is_flux(pipe):
                e, pp, _ = pipe.encode_prompt(prompt=p, prompt_2=p, device=device, num_images_per_prompt=1, **kwargs)
            else:
                e, _, pp, _ = pipe.encode_prompt(prompt=p, prompt_2=p, prompt_3=p, device=device, num_images_per_prompt=1,
                                                 do_classifier_free_guidance=False, **kwargs)
            enc.append(e.float().cpu())
            pooled.append(pp.float().cpu())
    return torch.cat(enc).contiguous(), torch.cat(pooled).contiguous()


def encode_negative(pipe, device, max_sequence_length=None):
    """The empty prompt's embeddings ([1, L, J], [1, P]): what StableDiffusion3Pipeline uses as the unconditional
    branch of classifier-free guidance when no negative prompt is given (`negative_prompt = ""`)."""
    e, p = encode_prompts(pipe, [""], device, max_sequence_length)
    return e, p


def latent_grid(pipe, resolution):
    """Latent size hprune records: the VAE downsamples 8x; FLUX packs 2x2 latent patches into one token."""
    down = 8 * (2 if is_flux(pipe) else 1)
    return resolution // down


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="pipeline folder (with transformer/, text_encoder*/, vae/)")
    ap.add_argument("--prompts", required=True, help="text file, one prompt per line")
    ap.add_argument("--resolution", type=int, default=1024, help="image size the latents are for")
    ap.add_argument("--max-sequence-length", type=int, default=None, help="T5 tokens (default: the pipeline's)")
    ap.add_argument("--no-negative", action="store_true", help="leave out the empty-prompt embedding")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    prompts = [line.strip() for line in open(args.prompts, encoding="utf-8") if line.strip()]
    if not prompts:
        raise SystemExit(f"{args.prompts}: no prompts")
    pipe = load_text_pipeline(args.model, args.device)
    enc, pooled = encode_prompts(pipe, prompts, args.device, args.max_sequence_length)
    tensors = {"encoder_hidden_states": enc, "pooled_projections": pooled}
    if not args.no_negative:
        tensors["negative_encoder_hidden_states"], tensors["negative_pooled_projections"] = encode_negative(
            pipe, args.device, args.max_sequence_length)
    side = latent_grid(pipe, args.resolution)
    save_file(tensors, args.out, metadata={"latent_height": str(side), "latent_width": str(side), "prompts": "\n".join(prompts)})
    print(f"{args.out}: {len(prompts)} prompts, encoder_hidden_states {tuple(enc.shape)}, latent {side}x{side}")


if __name__ == "__main__":
    main()
