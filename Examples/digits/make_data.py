"""Data for the digits reproduction (recipes/digits/): scikit-learn's handwritten digits (UCI optical digits,
1,797 8x8 grey images, CC BY 4.0, see LICENSE-DATA.md) as hprune datasets, with a fixed 80/20 train/test split.

Each image becomes an SD3-style "latent" [1, 16, 16]: bilinear upsampling of the 8x8 image (values 0..16) to
16x16, scaled to [-1, 1] (x / 8 - 1). The prompt of class k is "digit <word k>" ("digit seven"), embedded by a
fixed random token table that stands in for the text encoder:

    encoder_hidden_states [N, 2, 32] = [table["digit"], table[word k]]     (L = 2 tokens, J = 32)
    pooled_projections    [N, 32]    = pooled_table[word k]                (P = 32)

Both tables are N(0, 1) from torch seed 7; every sample of one class has the same embedding (the model learns
the class from the prompt alone). `labels` [N] int64 holds the digit. Split: 20 % of each class, chosen with
numpy seed 0, is the held-out test set. Run once (outputs are committed; the build and tests never need Python):

    /tmp/ref/bin/python Examples/digits/make_data.py
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from sklearn.datasets import load_digits

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TOKENS, JOINT, POOLED, SIZE = 2, 32, 32, 16


def main():
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)          # [1797, 8, 8], 0..16
    labels = torch.tensor(digits.target, dtype=torch.int64)            # [1797]
    up = F.interpolate(images[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    latents = (up / 8.0 - 1.0).clamp(-1.0, 1.0)                         # [1797, 1, 16, 16]

    g = torch.Generator().manual_seed(7)
    vocab = ["digit"] + WORDS
    table = {w: torch.randn(JOINT, generator=g) for w in vocab}
    pooled_table = {w: torch.randn(POOLED, generator=g) for w in WORDS}

    rng = np.random.default_rng(0)
    test_idx = []
    for k in range(10):
        idx = np.flatnonzero(digits.target == k)
        test_idx.extend(rng.choice(idx, size=round(0.2 * len(idx)), replace=False).tolist())
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[test_idx] = True

    for name, mask in (("train", ~test_mask), ("test", test_mask)):
        sel = torch.tensor(np.flatnonzero(mask))
        lab = labels[sel]
        enc = torch.stack([torch.stack([table["digit"], table[WORDS[k]]]) for k in lab.tolist()])
        pooled = torch.stack([pooled_table[WORDS[k]] for k in lab.tolist()])
        path = os.path.join(HERE, f"digits-{name}.safetensors")
        save_file({"latents": latents[sel].contiguous(), "labels": lab.contiguous(),
                   "encoder_hidden_states": enc.contiguous(), "pooled_projections": pooled.contiguous()},
                  path, metadata={"latent_height": str(SIZE), "latent_width": str(SIZE),
                                  "description": f"UCI optical digits (scikit-learn), {name} split, "
                                                 "16x16 in [-1, 1]; prompts 'digit <word>' via a fixed random token table",
                                  "license": "CC BY 4.0 (see Examples/digits/LICENSE-DATA.md)"})
        print(name, len(sel), os.path.getsize(path))


if __name__ == "__main__":
    main()
