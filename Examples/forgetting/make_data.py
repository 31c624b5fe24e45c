"""Data for the forgetting test bed (recipes/forgetting/): scikit-learn's handwritten digits (UCI optical digits,
1,797 8x8 grey images, CC BY 4.0, see LICENSE-DATA.md), augmented, as three hprune datasets:

    broad-train.safetensors   pre-training data of the teacher: every digit 0-9 of the 80 % training split,
                              COPIES augmented copies of each image (shift, scale, stroke thickness)
    narrow-distill.safetensors the distillation set: NARROW images of digits 0-4 only (one augmented copy of
                              training-split images), so digits 5-9 are never seen while distilling
    broad-test.safetensors    evaluation on everything: the 20 % held-out split of all ten digits, TEST_COPIES
                              augmented copies each, interleaved by class (so the first N samples cover every digit)

Split: the same 80/20 per class as Examples/digits/make_data.py (numpy seed 0). Each 8x8 image (0..16) is
upsampled bilinearly to 16x16 and scaled to [0, 1]; an augmentation then (torch seed AUG_SEED, per copy)
  - thickens or thins strokes: x + a * (dilate3x3(x) - x) for a in [0, 0.7], or x + a * (x - erode3x3(x)) for
    a in [-0.5, 0] (grey max / min filters),
  - scales by s in [0.8, 1.15] about the centre and shifts by (dx, dy) in [-2, 2] pixels (bilinear resampling,
    zeros outside),
and the result becomes x * 2 - 1 in [-1, 1] ("latents" [N, 1, 16, 16]). Prompts are those of Examples/digits:
"digit <word k>" embedded by the same fixed random token table (torch seed 7):

    encoder_hidden_states [N, 2, 32] = [table["digit"], table[word k]]     (L = 2 tokens, J = 32)
    pooled_projections    [N, 32]    = pooled_table[word k]                (P = 32)

`labels` [N] int64 holds the digit. Run once (outputs are committed and pinned by sha256 in
recipes/forgetting/base/forgetting.yaml; the build and tests never need Python):

    /root/venv/bin/python Examples/forgetting/make_data.py
"""
import hashlib
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
JOINT, POOLED, SIZE = 32, 32, 16
COPIES, TEST_COPIES, NARROW, SEEN = 4, 2, 300, (0, 1, 2, 3, 4)
AUG_SEED = 11


def save_file(tensors, path, metadata):
    """A safetensors file with a byte-stable header (keys sorted; safetensors' own writer orders the metadata
    differently from run to run, which would break the sha256 pins)."""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def augment(x, g):
    """x [N, 1, 16, 16] in [0, 1] -> augmented copy, same shape, in [0, 1]."""
    n = x.shape[0]
    dil = F.max_pool2d(x, 3, stride=1, padding=1)
    ero = -F.max_pool2d(-x, 3, stride=1, padding=1)
    a = torch.rand(n, 1, 1, 1, generator=g) * 1.2 - 0.5                   # [-0.5, 0.7]
    x = torch.where(a >= 0, x + a * (dil - x), x + a * (x - ero)).clamp(0, 1)
    s = 0.8 + torch.rand(n, generator=g) * 0.35                            # scale [0.8, 1.15]
    shift = (torch.rand(n, 2, generator=g) * 4 - 2) * (2.0 / SIZE)         # [-2, 2] px in [-1, 1] units
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1 / s
    theta[:, 1, 1] = 1 / s
    theta[:, :, 2] = -shift / s[:, None]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


def main():
    torch.set_num_threads(1)                                           # bit-identical output on any machine
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)          # [1797, 8, 8], 0..16
    labels = torch.tensor(digits.target, dtype=torch.int64)            # [1797]
    base = (F.interpolate(images[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False) / 16.0).clamp(0, 1)

    g = torch.Generator().manual_seed(7)
    vocab = ["digit"] + WORDS
    table = {w: torch.randn(JOINT, generator=g) for w in vocab}
    pooled_table = {w: torch.randn(POOLED, generator=g) for w in WORDS}

    rng = np.random.default_rng(0)                                     # the split of Examples/digits
    test_idx = []
    for k in range(10):
        idx = np.flatnonzero(digits.target == k)
        test_idx.extend(rng.choice(idx, size=round(0.2 * len(idx)), replace=False).tolist())
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[test_idx] = True
    train_sel, test_sel = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)

    aug = torch.Generator().manual_seed(AUG_SEED)
    perm = np.random.default_rng(1)

    def copies(sel, k):
        xs = torch.cat([augment(base[sel], aug) for _ in range(k)])
        ls = labels[sel].repeat(k)
        return xs, ls

    # broad training set: shuffled
    xb, lb = copies(train_sel, COPIES)
    order = torch.tensor(perm.permutation(len(lb)))
    xb, lb = xb[order], lb[order]
    # narrow distillation set: NARROW training-split images of the SEEN digits, one augmented copy each
    seen_idx = train_sel[np.isin(digits.target[train_sel], SEEN)]
    narrow = np.sort(perm.choice(seen_idx, size=NARROW, replace=False))
    xn, ln = copies(narrow, 1)
    # broad test set: interleaved by class (round robin over digits), so any prefix covers all ten
    xt, lt = copies(test_sel, TEST_COPIES)
    by_class = [torch.nonzero(lt == k).flatten().tolist() for k in range(10)]
    inter = [i for r in range(max(map(len, by_class))) for c in by_class if r < len(c) for i in [c[r]]]
    xt, lt = xt[inter], lt[inter]

    for name, x, lab, what in (("broad-train", xb, lb, f"training split, all ten digits, {COPIES} augmented copies, shuffled"),
                               ("narrow-distill", xn, ln, f"{NARROW} training-split images of digits 0-4, one augmented copy"),
                               ("broad-test", xt, lt, f"held-out split, all ten digits, {TEST_COPIES} augmented copies, interleaved by class")):
        enc = torch.stack([torch.stack([table["digit"], table[WORDS[k]]]) for k in lab.tolist()])
        pooled = torch.stack([pooled_table[WORDS[k]] for k in lab.tolist()])
        path = os.path.join(HERE, f"{name}.safetensors")
        save_file({"latents": (x * 2 - 1).contiguous(), "labels": lab.contiguous(),
                   "encoder_hidden_states": enc.contiguous(), "pooled_projections": pooled.contiguous()},
                  path, metadata={"latent_height": str(SIZE), "latent_width": str(SIZE),
                                  "description": f"UCI optical digits (scikit-learn), {what}; 16x16 in [-1, 1]; "
                                                 "prompts 'digit <word>' via a fixed random token table",
                                  "license": "CC BY 4.0 (see Examples/forgetting/LICENSE-DATA.md)"})
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        counts = torch.bincount(lab, minlength=10).tolist()
        print(name, len(lab), os.path.getsize(path), digest, counts)


if __name__ == "__main__":
    main()
