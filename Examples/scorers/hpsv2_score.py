"""HPSv2 scorer for hprune: mean Human Preference Score v2 of the decoded samples against their prompts.

The official HierarchicalPrune code scores every removal with HPSv2 (cont_analysis.py, `--benchmark_type hpsv2`,
via HPSv2's own `evaluate`), reporting the mean ×100 (e.g. 30.29 for SD3.5 Large Turbo); this scorer reports the
same scale (`--scale 100`). As a `score` stage's scorer (hprune drives the per-component loop):

    score:
      kind: score
      model: teacher
      data: calibration                 # Examples/embed_prompts.py output (it stores the prompts)
      components: [attn, ff, ff_context, w_norm1, w_norm1_context]
      metric: external
      scorer:
        run: [python3, ../Examples/scorers/hpsv2_score.py, --vae, "${env.SD35_LARGE_TURBO}/vae"]
        deps: [../Examples/scorers/hpsv2_score.py, ../Examples/scorers/samples.py]

or on an evaluate stage's samples (`evaluate: {…, latents: true}`) in a command stage:

    hpsv2:
      kind: command
      run: [python3, ../Examples/scorers/hpsv2_score.py, --vae, "${env.SD35_LARGE_TURBO}/vae"]
      inputs: { samples: evaluate.latents }
      outputs: [scores.json]            # {"scores": {"original": P, "compressed": P}, "details": …}
      deps: [../Examples/scorers/hpsv2_score.py, ../Examples/scorers/samples.py]

or by hand: `python Examples/scorers/hpsv2_score.py --samples s.safetensors --vae $SD35_LARGE_TURBO/vae --out p.json`.
Needs torch, diffusers and the `hpsv2` package (pip install hpsv2; it downloads its checkpoint on first use).
"""
import numpy as np

from samples import arguments, decode, read_samples, run, save_images


def main():
    ap = arguments(__doc__)
    ap.add_argument("--hps-version", default="v2.0", choices=["v2.0", "v2.1"], help="HPS checkpoint (the paper: v2.0)")
    ap.add_argument("--scale", type=float, default=100.0, help="multiplier of the mean score (100: the official reports' units)")
    args = ap.parse_args()
    import hpsv2

    def score_one(path):
        z, meta, prompts = read_samples(path, args.prompts)
        images = decode(z, meta, args.vae, args.device, args.batch)
        save_images(images, args.save_images, meta.get("variant", "samples"))
        per = [args.scale * float(hpsv2.score(im, p, hps_version=args.hps_version)[0]) for im, p in zip(images, prompts)]
        return float(np.mean(per)), {"per_sample": per, "metric": "hpsv2", "hps_version": args.hps_version}

    run(args, score_one)


if __name__ == "__main__":
    main()
