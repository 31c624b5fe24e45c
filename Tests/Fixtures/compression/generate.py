# Reference outputs of bitsandbytes 4-bit quantisation for `hprune quantise` / the `quantise` stage.
# Run once with /tmp/ref/bin/python (torch, bitsandbytes 0.50, safetensors); outputs are committed.
#
# For every Linear weight (2-D `*.weight`) of the committed fixture model ../models/sd3_tiny, quantise with
# bitsandbytes.functional.quantize_4bit on CPU and save what `Linear4bit._save_to_state_dict` writes (the packed
# weight plus `QuantState.as_dict(packed=True)`) under the same keys: `X.weight`, `X.weight.absmax`,
# `X.weight.quant_map`, [`X.weight.nested_absmax`, `X.weight.nested_quant_map`], `X.weight.quant_state.bitsandbytes__*`.
# One file per configuration: bnb_<type>_<block>[_dq].safetensors. Block 4096 makes every block partial.
import json
import os

import bitsandbytes.functional as F
import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "models", "sd3_tiny", "diffusion_pytorch_model.safetensors")
CONFIGS = [("nf4", 64, False), ("fp4", 64, True), ("nf4", 4096, True), ("fp4", 128, False)]

torch.manual_seed(0)
weights = load_file(MODEL)
linear = sorted(k for k, v in weights.items() if k.endswith(".weight") and v.dim() == 2)
index = {"model": "../models/sd3_tiny", "linear_weights": linear, "files": {}}
for qtype, block, dq in CONFIGS:
    out = {}
    for name in linear:
        w = weights[name].float().contiguous()
        packed, state = F.quantize_4bit(w, blocksize=block, compress_statistics=dq, quant_type=qtype)
        out[name] = packed.contiguous()
        for k, v in state.as_dict(packed=True).items():
            out[name + "." + k] = v.contiguous()
    fname = f"bnb_{qtype}_{block}{'_dq' if dq else ''}.safetensors"
    save_file(out, os.path.join(HERE, fname), metadata={"format": "pt"})
    index["files"][fname] = {"format": qtype, "block_size": block, "double_quant": dq, "tensors": len(out)}
with open(os.path.join(HERE, "index.json"), "w") as f:
    json.dump(index, f, indent=2, sort_keys=True)
    f.write("\n")
print("wrote", len(CONFIGS), "files,", len(linear), "Linear weights each")
