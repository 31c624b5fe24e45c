#!/tmp/ref/bin/python
"""Generates the bitsandbytes reference fixtures for Tests/QuantTests (run once; outputs are committed).

Usage: /tmp/ref/bin/python Tests/Fixtures/quant/generate.py
Writes quant.bin (all arrays, little-endian, back to back) and index.json (what each array is, where it lies).
Every 4-bit result comes from bitsandbytes.functional.quantize_4bit on CPU (bitsandbytes 0.50, torch CPU,
torch.set_num_threads(2)); the 8-bit blockwise results from bitsandbytes.functional.quantize_blockwise.
"""
import hashlib
import json
import os
import struct

import numpy as np
import torch
import bitsandbytes
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(2)
torch.manual_seed(1234)

blob = bytearray()


def put(arr: np.ndarray) -> dict:
    """Appends an array to the blob; returns its reference {offset, count, dtype}."""
    arr = np.ascontiguousarray(arr)
    kind = {np.dtype("float32"): "f32", np.dtype("uint8"): "u8"}[arr.dtype]
    while len(blob) % 4:
        blob.append(0)
    off = len(blob)
    blob.extend(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
    return {"offset": off, "count": int(arr.size), "dtype": kind}


def f32bits(x: float) -> str:
    return "%08x" % struct.unpack("<I", struct.pack("<f", x))[0]


def fnv1a(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def lcg_weights(n: int, seed: int) -> np.ndarray:
    """Deterministic weights any language can regenerate exactly: 31-bit LCG, top 23 bits -> [-0.5, 0.5)."""
    out = np.empty(n, dtype=np.float32)
    s = seed
    vals = []
    for i in range(n):
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        vals.append((s >> 8) * 2.0**-23 - 0.5)
    out[:] = np.array(vals, dtype=np.float64).astype(np.float32)
    return out


def reference_dequant(packed: torch.Tensor, st) -> torch.Tensor:
    """bitsandbytes' pure-PyTorch dequantize_4bit (backends/default), in float32.

    F.dequantize_4bit on an AVX512 CPU runs a C++ kernel that indexes absmax as if every row held a whole
    number of blocks (absmax[row * (cols // blocksize) + k]); when cols % 16 == 0 but cols % blocksize != 0
    (e.g. 96 or 80 columns at blocksize 64) it reads the wrong absmax. Both outputs are saved; the tests hold
    ours to this one everywhere and to the kernel's where the kernel is right.
    """
    absmax = st.absmax
    if st.nested:
        absmax = F.dequantize_blockwise(st.absmax, st.state2)
        absmax += st.offset
    code = F.get_4bit_type(st.quant_type, device="cpu")
    return _dequantize_4bit_compute.__wrapped__(packed.reshape(-1), absmax.float(), code, st.blocksize, st.shape, torch.float32)


def kernel_mismatches(ref: torch.Tensor, kernel: torch.Tensor) -> int:
    """Elements where bitsandbytes' CPU dequant kernel differs from the reference (after rounding the reference
    to the kernel's dtype; NaN equals NaN; the sign of zero counts)."""
    r = ref.reshape(-1).to(kernel.dtype).float()
    k = kernel.reshape(-1).float()
    both_nan = torch.isnan(r) & torch.isnan(k)
    diff = ((r != k) | (torch.signbit(r) != torch.signbit(k))) & ~both_nan
    return int(diff.sum())


def quant_results(w: torch.Tensor, configs) -> list:
    results = []
    for qt, bs, nested in configs:
        packed, st = F.quantize_4bit(w, blocksize=bs, compress_statistics=nested, quant_type=qt)
        d = st.as_dict(packed=True)
        ref = reference_dequant(packed, st)
        kernel = F.dequantize_4bit(packed, st)
        qs_key = "quant_state.bitsandbytes__" + qt
        r = {
            "quant_type": qt,
            "blocksize": bs,
            "nested": nested,
            "packed_shape": list(packed.shape),
            "packed": put(packed.numpy().reshape(-1)),
            "absmax": put(st.absmax.numpy()),
            "quant_map": put(st.code.numpy()),
            "quant_state": put(d[qs_key].numpy()),
            "keys": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in d.items()},
            "dequant": put(ref.numpy().reshape(-1)),
            # Whether F.dequantize_4bit (the CPU kernel) agrees bit for bit (0.0 and -0.0 count as different).
            "cpu_kernel_mismatches": kernel_mismatches(ref, kernel),
        }
        if nested:
            r["nested_absmax"] = put(st.state2.absmax.numpy())
            r["nested_quant_map"] = put(st.state2.code.numpy())
            r["offset_bits"] = f32bits(st.offset.item())
        results.append(r)
    return results


ALL = [(qt, bs, n) for qt in ("nf4", "fp4") for bs in (64, 128) for n in (False, True)]
PLAIN = [(qt, bs, False) for qt in ("nf4", "fp4") for bs in (64, 128)]


def ties(qt: str) -> torch.Tensor:
    """Values exactly on bitsandbytes' midpoints (and one ulp either side), in blocks whose absmax is 1 or 2."""
    code = F.get_4bit_type(qt, device="cpu")
    s = torch.sort(code).values
    mids = ((s[:-1] + s[1:]) / 2).numpy().astype(np.float32)
    vals = []
    for m in mids:
        vals += [m, np.nextafter(m, np.float32(-2)), np.nextafter(m, np.float32(2))]
    vals += [0.0, -0.0, 1e-30, -1e-30, 1e-45, -1e-45]
    vals = np.array(vals, dtype=np.float32)
    blocks = []
    for scale in (1.0, 2.0):
        for i in range(0, len(vals), 63):
            chunk = vals[i:i + 63] * np.float32(scale)
            blk = np.concatenate([np.array([scale], dtype=np.float32), chunk])
            blk = np.pad(blk, (0, 64 - len(blk)))
            blocks.append(blk)
    flat = np.concatenate(blocks)
    # end with a partial block (divided, not multiplied, by its absmax in bitsandbytes' CPU path)
    tail = np.concatenate([np.array([1.0], dtype=np.float32), mids[:9]])
    return torch.from_numpy(np.concatenate([flat, tail]).astype(np.float32))


cases = []


def add(name: str, w: torch.Tensor, configs=ALL):
    inp = w.float().numpy().reshape(-1)
    cases.append({
        "name": name,
        "shape": list(w.shape),
        "dtype": str(w.dtype).replace("torch.", ""),
        "input": put(inp),
        "results": quant_results(w, configs),
    })


add("normal_64x96", torch.randn(64, 96))
add("normal_bf16_48x80", torch.randn(48, 80).to(torch.bfloat16))
w = torch.randn(33, 47)
w[torch.rand(33, 47) < 0.3] = 0.0
add("sparse_zeros_33x47_odd", w)
w = torch.randn(17, 60) * 0.05
w[5] = 0.0
w[16] = 0.0
add("zero_rows_17x60", w)
w = torch.randn(70)
w[64:] = 0.0
add("zero_partial_tail_70", w)
add("all_zero_3x50", torch.zeros(3, 50))
add("ties_nf4", ties("nf4"))
add("ties_fp4", ties("fp4"))
add("odd_7", torch.randn(7))
add("small_3x7", torch.randn(3, 7))
w = torch.randn(24, 40) * torch.logspace(-3, 3, 24).unsqueeze(1)
w[0, :5] = torch.tensor([1e-40, -1e-40, 1e-38, 3e-39, -7e-39])
add("mixed_scale_24x40", w)
add("large_100x200", torch.randn(100, 200) * 0.02, [("nf4", 64, True), ("fp4", 64, True), ("nf4", 128, True)])
add("blocksizes_50x100", torch.randn(50, 100),
    [("nf4", 32, True), ("fp4", 32, False), ("nf4", 256, False), ("fp4", 512, True), ("nf4", 4096, True)])
w = torch.randn(4, 64)
w[0, 3] = float("nan")
w[2, 7] = float("inf")
w[3, 9] = float("-inf")
add("nan_inf_4x64", w, PLAIN)

# 8-bit blockwise with the dynamic map (the nested-statistics quantiser), on its own.
blockwise8 = []
for name, x, bs in [
    ("normal_5000_b256", torch.randn(5000), 256),
    ("normal_9000_b4096", torch.randn(9000) * 3, 4096),
    ("zeros_then_normal_600_b256", torch.cat([torch.zeros(256), torch.randn(344)]), 256),
]:
    q, st = F.quantize_blockwise(x, blocksize=bs)
    blockwise8.append({
        "name": name, "blocksize": bs, "input": put(x.numpy()), "q": put(q.numpy()),
        "absmax": put(st.absmax.numpy()), "code": put(st.code.numpy()),
        "dequant": put(F.dequantize_blockwise(q, st).numpy()),
    })

# Per-row int8 (bitsandbytes int8_vectorwise_quant, threshold 0): rows of mixed scale, one all-zero row left out
# because bitsandbytes computes 0 * inf = NaN there and casts it to int8 (undefined).
int8_rows = []
for name, x in [("normal_37x50", torch.randn(37, 50)),
                ("mixed_16x33", torch.randn(16, 33) * torch.logspace(-2, 2, 16).unsqueeze(1))]:
    q, stats, _ = F.int8_vectorwise_quant(x.clone())
    int8_rows.append({"name": name, "shape": list(x.shape), "input": put(x.numpy().reshape(-1)),
                      "q": put(q.numpy().view(np.uint8).reshape(-1)), "row_absmax": put(stats.numpy())})

# PyTorch float32 sum / mean of 1-D tensors (the nested offset is absmax.mean()); small ones stored, long ones
# (>= 32768, reduced on 2 threads) regenerated from the LCG by the test.
torch_sums = []
for n in list(range(1, 41)) + [63, 64, 65, 127, 129, 1000, 4097]:
    x = torch.rand(n) * 3
    torch_sums.append({"n": n, "input": put(x.numpy()), "sum_bits": f32bits(x.sum().item()),
                       "mean_bits": f32bits(x.mean().item())})
for n, seed in [(32768, 7), (40000, 8), (65537, 9), (100003, 10)]:
    x = torch.from_numpy(lcg_weights(n, seed))
    torch_sums.append({"n": n, "lcg_seed": seed, "sum_bits": f32bits(x.sum().item()),
                       "mean_bits": f32bits(x.mean().item())})

# Big layer: 2432 x 1024 (38912 blocks of 64 > torch's 32768 grain: the absmax mean runs on 2 threads).
# The input is regenerated by the test from the LCG; only digests of the outputs are stored.
n_big = 2432 * 1024
wb = torch.from_numpy(lcg_weights(n_big, 42)).reshape(2432, 1024)
pk, st = F.quantize_4bit(wb, blocksize=64, compress_statistics=True, quant_type="nf4")
big = {
    "shape": [2432, 1024], "lcg_seed": 42, "quant_type": "nf4", "blocksize": 64, "nested": True,
    "torch_threads": torch.get_num_threads(),
    "packed_fnv1a": fnv1a(pk.numpy().tobytes()),
    "absmax_fnv1a": fnv1a(st.absmax.numpy().tobytes()),
    "nested_absmax_fnv1a": fnv1a(st.state2.absmax.numpy().tobytes()),
    "offset_bits": f32bits(st.offset.item()),
    "quant_state": bytes(st.as_dict(packed=True)["quant_state.bitsandbytes__nf4"].numpy()).decode(),
    "lcg_first": [f32bits(float(v)) for v in wb.reshape(-1)[:4]],
}

index = {
    "generator": "Tests/Fixtures/quant/generate.py",
    "bitsandbytes": bitsandbytes.__version__,
    "torch": torch.__version__,
    "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    "torch_threads": torch.get_num_threads(),
    "cases": cases,
    "blockwise8": blockwise8,
    "big": big,
    "int8_rows": int8_rows,
    "torch_sums": torch_sums,
}
with open(os.path.join(HERE, "quant.bin"), "wb") as f:
    f.write(bytes(blob))
with open(os.path.join(HERE, "index.json"), "w") as f:
    json.dump(index, f, indent=1)
print("wrote", len(blob), "bytes,", len(cases), "cases")
