"""GenEval-style scorer for hprune: compositional prompt following of the decoded samples, scored per task.

GenEval (Ghosh et al., 2023; the paper's other quality metric, cont_analysis.py `--benchmark_type geneval`) pairs
each prompt with metadata saying what the image must show, detects objects, and counts an image correct when every
requirement holds; the score is the mean over tasks of each task's share of correct images (cont_analysis.py
averages `correct` per `tag`). GenEval proper detects with Mask2Former (mmdetection) and judges colours with CLIP;
this scorer keeps the rules but detects with an open-vocabulary detector from `transformers` (OWLv2 by default) and
judges colours with CLIP zero-shot on the detected crops, so it installs with pip alone. Its numbers are therefore
GenEval-*style*: comparable between hprune variants, not to published GenEval tables.

Metadata: a JSONL file in GenEval's evaluation_metadata.jsonl format, line i for sample i:
    {"tag": "counting", "prompt": "a photo of three dogs", "include": [{"class": "dog", "count": 3}]}
    {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]}
    {"tag": "position", "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1, "position": ["left of", 0]}]}
    "exclude": [{"class": "dog", "count": 2}] means fewer than 2 dogs.
Embed the metadata's prompts, in order, with Examples/embed_prompts.py (one prompt per line) for the dataset.

    scorer:
      run: [python3, ../Examples/scorers/geneval_score.py, --vae, "${env.SD35_LARGE_TURBO}/vae",
            --metadata, ../data/geneval-metadata.jsonl]

Needs torch, diffusers, transformers and Pillow (the detector and CLIP download on first use).
"""
import json
from collections import defaultdict

import torch

from samples import arguments, decode, read_samples, run, save_images

COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]


class Judge:
    def __init__(self, detector, clip, device, threshold):
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor, CLIPModel, CLIPProcessor
        self.device, self.threshold = device, threshold
        self.det_proc = AutoProcessor.from_pretrained(detector)
        self.det = AutoModelForZeroShotObjectDetection.from_pretrained(detector).to(device).eval()
        self.clip_proc = CLIPProcessor.from_pretrained(clip)
        self.clip = CLIPModel.from_pretrained(clip).to(device).eval()

    @torch.no_grad()
    def detect(self, image, classes):
        """{class: [(box (x0, y0, x1, y1), score)]} above the threshold."""
        inputs = self.det_proc(text=[[f"a photo of a {c}" for c in classes]], images=image, return_tensors="pt").to(self.device)
        out = self.det(**inputs)
        size = torch.tensor([image.size[::-1]], device=self.device)
        res = self.det_proc.post_process_grounded_object_detection(out, threshold=self.threshold, target_sizes=size)[0]
        found = defaultdict(list)
        for box, score, label in zip(res["boxes"], res["scores"], res["labels"]):
            found[classes[int(label)]].append((box.tolist(), float(score)))
        return found

    @torch.no_grad()
    def color(self, image, box, cls):
        crop = image.crop(tuple(int(v) for v in box))
        inputs = self.clip_proc(text=[f"a photo of a {c} {cls}" for c in COLORS], images=crop, return_tensors="pt", padding=True).to(self.device)
        return COLORS[int(self.clip(**inputs).logits_per_image.argmax())]


def relation(a, b, rel):
    """`a` is `rel` of `b`, by box centres (GenEval also requires a margin relative to the boxes' sizes)."""
    ax, ay = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    return {"left of": ax < bx, "right of": ax > bx, "above": ay < by, "below": ay > by}[rel]


def correct(judge, image, meta):
    reqs = meta.get("include", [])
    classes = sorted({r["class"] for r in reqs + meta.get("exclude", [])})
    found = judge.detect(image, classes)
    for r in meta.get("exclude", []):
        if len(found.get(r["class"], [])) >= r["count"]:
            return False
    boxes = []
    for r in reqs:
        got = sorted(found.get(r["class"], []), key=lambda x: -x[1])
        if len(got) < r["count"]:          # exact counts come from `exclude` (count + 1), as GenEval's metadata
            return False
        got = got[:r["count"]]
        if "color" in r and any(judge.color(image, b, r["class"]) != r["color"] for b, _ in got):
            return False
        if "position" in r:
            rel, j = r["position"]
            if not boxes or j >= len(boxes) or not relation(got[0][0], boxes[j], rel):
                return False
        boxes.append(got[0][0])
    return True


def main():
    ap = arguments(__doc__)
    ap.add_argument("--metadata", required=True, help="GenEval-format JSONL, one line per sample")
    ap.add_argument("--detector", default="google/owlv2-base-patch16-ensemble")
    ap.add_argument("--clip", default="openai/clip-vit-large-patch14")
    ap.add_argument("--threshold", type=float, default=0.3, help="detection score threshold (GenEval: 0.3)")
    args = ap.parse_args()

    tasks = [json.loads(l) for l in open(args.metadata, encoding="utf-8") if l.strip()]
    judge = Judge(args.detector, args.clip, args.device, args.threshold)

    def score_one(path):
        z, meta, prompts = read_samples(path, args.prompts)
        if len(tasks) != z.shape[0]:
            raise SystemExit(f"{args.metadata}: {len(tasks)} entries for {z.shape[0]} samples in {path} (line i describes sample i)")
        images = decode(z, meta, args.vae, args.device, args.batch)
        save_images(images, args.save_images, meta.get("variant", "samples"))
        by_tag = defaultdict(list)
        for image, t in zip(images, tasks):
            by_tag[t.get("tag", "all")].append(float(correct(judge, image, t)))
        per_tag = {k: sum(v) / len(v) for k, v in sorted(by_tag.items())}
        return sum(per_tag.values()) / len(per_tag), {"per_tag": per_tag, "metric": "geneval-style"}

    run(args, score_one)


if __name__ == "__main__":
    main()
