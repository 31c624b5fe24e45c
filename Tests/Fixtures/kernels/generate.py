# Generates bnb_4bit.json: a small weight quantised by bitsandbytes (NF4 and FP4, blocksize 64) with its packed
# bytes, absmax and bitsandbytes' own dequantisation, so the CPU kernels can be checked for bit compatibility.
# Run once with a Python that has torch and bitsandbytes:  python generate.py  (writes next to this file).
import json, os
import torch
import bitsandbytes.functional as F

torch.manual_seed(0)
# K is a multiple of the block size, as in every real layer. (With K % 64 != 0, bitsandbytes 0.50.2's CPU
# dequantize_4bit does not use the flattened 64-element blocks its own quantize_4bit wrote, so it cannot serve
# as a reference there; our kernels follow the flattened-block definition, checked against the C references.)
N, K, BLOCK = 5, 128, 64
w = torch.randn(N, K, dtype=torch.float32)
out = {"n": N, "k": K, "block": BLOCK, "weight": w.flatten().tolist()}
for qt in ("nf4", "fp4"):
    q, st = F.quantize_4bit(w, blocksize=BLOCK, quant_type=qt)
    d = F.dequantize_4bit(q, st)
    out[qt] = {
        "packed": q.flatten().tolist(),
        "absmax": st.absmax.flatten().tolist(),
        "code": st.code.flatten().tolist(),
        "dequantized": d.flatten().tolist(),
    }
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bnb_4bit.json")
with open(path + ".tmp", "w") as f:
    json.dump(out, f)
os.replace(path + ".tmp", path)
print("wrote", path)
