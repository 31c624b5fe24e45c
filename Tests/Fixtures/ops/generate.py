# Generates ops.json: a few TensorCore ops computed by PyTorch (float64), the independent check on the reference
# backend. Run once with the project's reference Python: /tmp/ref/bin/python generate.py  (output committed).
import json
import math

import torch

torch.manual_seed(0)
dt = torch.float64


def r(*shape, lo=-1.0, hi=1.0):
    """Uniform values that are exactly representable in f32 (what the Swift side reads)."""
    return (torch.rand(*shape, dtype=dt) * (hi - lo) + lo).float().double()


def flat(t):
    return [float(v) for v in t.detach().reshape(-1)]


cases = {}

x = r(3, 7, lo=-4, hi=4)
cases["gelu"] = {"x": flat(x), "shape": list(x.shape),
                 "y": flat(torch.nn.functional.gelu(x, approximate="tanh"))}
cases["silu"] = {"x": flat(x), "shape": list(x.shape), "y": flat(torch.nn.functional.silu(x))}

x = r(4, 65, lo=-2, hi=3).requires_grad_()
y = torch.nn.functional.layer_norm(x, (65,), eps=1e-6)
dy = r(4, 65)
(dx,) = torch.autograd.grad(y, x, dy)
cases["layer_norm"] = {"x": flat(x), "shape": [4, 65], "y": flat(y), "dy": flat(dy), "dx": flat(dx)}

x = r(4, 63, lo=-2, hi=3).requires_grad_()
w = r(63).requires_grad_()
y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
dy = r(4, 63)
dx, dw = torch.autograd.grad(y, (x, w), dy)
cases["rms_norm"] = {"x": flat(x), "w": flat(w), "shape": [4, 63], "y": flat(y), "dy": flat(dy),
                     "dx": flat(dx), "dw": flat(dw)}

x = r(3, 33, lo=-6, hi=6)
cases["softmax"] = {"x": flat(x), "shape": [3, 33], "y": flat(torch.softmax(x, -1))}

q = r(1, 2, 7, 16, lo=-2, hi=2).requires_grad_()
k = r(1, 2, 9, 16, lo=-2, hi=2).requires_grad_()
v = r(1, 2, 9, 16).requires_grad_()
scale = 1 / math.sqrt(16)
o = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)
do = r(1, 2, 7, 16)
dq, dk, dv = torch.autograd.grad(o, (q, k, v), do)
cases["attention"] = {"q": flat(q), "k": flat(k), "v": flat(v), "q_shape": [1, 2, 7, 16],
                      "kv_shape": [1, 2, 9, 16], "scale": scale, "o": flat(o), "do": flat(do),
                      "dq": flat(dq), "dk": flat(dk), "dv": flat(dv),
                      "lse": flat(torch.logsumexp(q @ k.transpose(-1, -2) * scale, -1))}

# AdamW: three steps from zero moments, torch.optim.AdamW defaults except lr/weight decay.
p = r(5, 7).requires_grad_()
p0 = flat(p)
grads = [r(5, 7) for _ in range(3)]
opt = torch.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
for g in grads:
    p.grad = g.clone()
    opt.step()
cases["adamw"] = {"p0": p0, "shape": [5, 7], "grads": [flat(g) for g in grads], "lr": 1e-2, "wd": 0.1,
                  "p": flat(p), "m": flat(opt.state[p]["exp_avg"]), "v": flat(opt.state[p]["exp_avg_sq"])}

# Gradient clipping by global norm over two tensors.
a, b = r(4, 9, lo=-3, hi=3), r(11, lo=-3, hi=3)
pa, pb = a.clone().requires_grad_(), b.clone().requires_grad_()
pa.grad, pb.grad = a.clone(), b.clone()
norm = torch.nn.utils.clip_grad_norm_([pa, pb], max_norm=1.0)
cases["clip"] = {"a": flat(a), "b": flat(b), "max_norm": 1.0, "norm": float(norm),
                 "a_clipped": flat(pa.grad), "b_clipped": flat(pb.grad)}

with open("ops.json", "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f)
