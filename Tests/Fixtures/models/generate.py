#!/usr/bin/env python3
# Parity fixtures for the model layer, generated once with diffusers and committed. The Swift
# build and tests never run this. Run: /tmp/ref/bin/python Tests/Fixtures/models/generate.py
#
# Writes, next to this file:
#   <model>/config.json, <model>/diffusion_pytorch_model.safetensors  tiny diffusers folders, every
#                                weight randomised (diffusers zero-inits adaLN and output layers)
#   <model>/io.safetensors       forward inputs named as diffusers' forward args + output `sample` (f32)
#   <model>/train.safetensors    MSE(sample, target) loss and grad.<param> for every parameter
#   <model>/removal_<k>.safetensors  output `sample` with components removed as the official
#                                HierarchicalPrune code does (metadata `removed`: comma-separated addresses)
#   manifest.json                per model: parameter count, per-address parameter counts, removals
#   schedules.json               FlowMatchEulerDiscreteScheduler sigmas/timesteps for several configs
#   compat/python_written.safetensors + compat/python_written.json   safetensors byte-compat check
#   sd35_large_turbo_layout/     SD3.5-Large-Turbo-shaped (38 layers, rms qk-norm) with tiny dims, bf16
#   (checked after writing: each folder reloads with diffusers and gives the same output)
#
# Optional cross-check: HP_OFFICIAL_IDENTITY=/path/to/HierarchicalPrune/utils/identity_block.py
# compares every single-address removal against the official identity modules.

import copy
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
from diffusers.training_utils import compute_density_for_timestep_sampling

HERE = os.path.dirname(os.path.abspath(__file__))
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


# ── randomisation ──────────────────────────────────────────────────────────────────────────────
def randomise(model, seed):
    """Every parameter random: weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1²), norm scales 1 + N(0, 0.1²)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif name.endswith("norm_q.weight") or name.endswith("norm_k.weight") or "norm_added" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


# ── official removal semantics, re-implemented for diffusers 0.42 signatures ─────────────────
# (utils/identity_block.py and model/builder.py of SamsungLabs/HierarchicalPrune; the modules are
# replaced by parameter-free identities, the blocks' own forwards are unchanged.)
class IdBlockJoint(torch.nn.Module):  # whole SD3 / FLUX double block
    def forward(self, hidden_states, encoder_hidden_states, *args, **kwargs):
        return encoder_hidden_states, hidden_states


class IdBlockSingle(torch.nn.Module):  # whole FLUX single block (0.42 passes both streams)
    def forward(self, hidden_states, encoder_hidden_states, *args, **kwargs):
        return encoder_hidden_states, hidden_states


class IdAttn(torch.nn.Module):  # attention returns its (normalised, modulated) inputs
    def forward(self, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            return hidden_states, encoder_hidden_states
        return hidden_states


class IdFF(torch.nn.Module):
    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class IdAdaNormZero(torch.nn.Module):
    """norm1 / norm1_context replacement: gates 1, shift/scale 0; optional plain LayerNorm (w_ variants)."""

    def __init__(self, dim=None, dual=False, context_pre_only=False):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) if dim else None
        self.dual, self.cpo = dual, context_pre_only

    def forward(self, x, *args, **kwargs):
        ones = torch.ones(x.shape[0], x.shape[-1], dtype=x.dtype)
        zeros = torch.zeros(x.shape[0], x.shape[-1], dtype=x.dtype)
        if self.norm is not None:
            x = self.norm(x)
        if self.dual:
            return x, ones, zeros, zeros, ones, x, ones
        if self.cpo:
            return x
        return x, ones, zeros, zeros, ones


class IdAdaNormSingle(torch.nn.Module):
    def __init__(self, dim=None):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) if dim else None

    def forward(self, x, *args, **kwargs):
        gate = torch.ones(x.shape[0], x.shape[-1], dtype=x.dtype)
        return (self.norm(x) if self.norm is not None else x), gate


def single_forward_proj_mlp_out_removed(self, hidden_states, encoder_hidden_states, temb, image_rotary_emb=None,
                                        joint_attention_kwargs=None):
    """FLUX single block with proj_mlp and proj_out removed: x += gate * attn(n) (official
    model/transformers.py keeps the first D channels of cat[attn, gelu(n)])."""
    text_len = encoder_hidden_states.shape[1]
    x = torch.cat([encoder_hidden_states, hidden_states], dim=1)
    n, gate = self.norm(x, emb=temb)
    a = self.attn(hidden_states=n, image_rotary_emb=image_rotary_emb)
    x = x + gate.unsqueeze(1) * a
    return x[:, :text_len], x[:, text_len:]


def apply_removal(model, addresses):
    """Applies addresses like 'blocks.3', 'blocks.1.ff' with the official semantics."""
    is_flux = isinstance(model, FluxTransformer2DModel)
    D = model.inner_dim
    n_double = len(model.transformer_blocks)
    for addr in addresses:
        parts = addr.split(".")
        i = int(parts[1])
        comp = parts[2] if len(parts) == 3 else "block"
        if not is_flux or i < n_double:
            blk = model.transformer_blocks[i]
            dual = getattr(blk, "use_dual_attention", False)
            cpo = getattr(blk, "context_pre_only", False)
            if comp == "block":
                model.transformer_blocks[i] = IdBlockJoint()
            elif comp == "norm1":
                blk.norm1 = IdAdaNormZero(dual=dual)
            elif comp == "w_norm1":
                blk.norm1 = IdAdaNormZero(D, dual=dual)
            elif comp == "norm1_context":
                blk.norm1_context = IdAdaNormZero(context_pre_only=cpo)
            elif comp == "w_norm1_context":
                blk.norm1_context = IdAdaNormZero(D, context_pre_only=cpo)
            elif comp == "attn":
                blk.attn = IdAttn()
                if getattr(blk, "attn2", None) is not None:
                    blk.attn2 = IdAttn()
            elif comp == "ff":
                blk.ff = IdFF()
            elif comp == "ff_context":
                assert not cpo
                blk.ff_context = IdFF()
            else:
                raise ValueError(addr)
        else:
            j = i - n_double
            blk = model.single_transformer_blocks[j]
            if comp == "block":
                model.single_transformer_blocks[j] = IdBlockSingle()
            elif comp == "norm":
                blk.norm = IdAdaNormSingle()
            elif comp == "w_norm":
                blk.norm = IdAdaNormSingle(D)
            elif comp == "attn":
                blk.attn = IdAttn()
            elif comp == "proj_mlp_out":
                blk.proj_mlp = IdFF()
                blk.proj_out = IdFF()
                blk.forward = single_forward_proj_mlp_out_removed.__get__(blk)
            else:
                raise ValueError(addr)
    return model


def apply_removal_official(model, addresses, off):
    """The same removals with the official identity classes (utils/identity_block.py, loaded from
    a local copy), constructed with the arguments model/builder.py passes. FLUX single-block
    `block` and `proj_mlp_out` are skipped: the official versions target the pre-0.35 diffusers
    single-block signature."""
    is_flux = isinstance(model, FluxTransformer2DModel)
    D = model.inner_dim
    n_double = len(model.transformer_blocks)
    for addr in addresses:
        parts = addr.split(".")
        i = int(parts[1])
        comp = parts[2] if len(parts) == 3 else "block"
        if not is_flux or i < n_double:
            blk = model.transformer_blocks[i]
            dual = getattr(blk, "use_dual_attention", False)
            cpo = getattr(blk, "context_pre_only", False)
            if comp == "block":
                model.transformer_blocks[i] = off.Identity_Block_Flux() if is_flux else off.Identity_Block_SD()
            elif comp in ("norm1", "w_norm1"):
                kw = {"embedding_dim": D} if comp == "w_norm1" else {}
                blk.norm1 = off.Identity_Block_AdaLayerNormZero(**kw) if is_flux else \
                    off.Identity_Block_AdaLayerNormZero(use_dual_attention=dual, **kw)
            elif comp in ("norm1_context", "w_norm1_context"):
                kw = {"embedding_dim": D} if comp == "w_norm1_context" else {}
                blk.norm1_context = off.Identity_Block_AdaLayerNormZero(**kw) if is_flux else \
                    off.Identity_Block_AdaLayerNormZero(context_pre_only=cpo, **kw)
            elif comp == "attn":
                blk.attn = off.Identity_Block_JointAttn()
                if getattr(blk, "attn2", None) is not None:
                    blk.attn2 = off.Identity_Block_JointAttn()
            elif comp == "ff":
                blk.ff = off.Identity_Block_FeedForward()
            elif comp == "ff_context":
                blk.ff_context = off.Identity_Block_FeedForward()
        else:
            blk = model.single_transformer_blocks[i - n_double]
            if comp == "norm":
                blk.norm = off.Identity_Block_AdaLayerNormZeroSingle()
            elif comp == "w_norm":
                blk.norm = off.Identity_Block_AdaLayerNormZeroSingle(embedding_dim=D)
            elif comp == "attn":
                blk.attn = off.Identity_Block_JointAttn()
            else:
                return None
    return model


def check_against_official(name, model, inputs, path):
    """Every single-address removal: our identities and the official ones give the same output."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("official_identity_block", path)
    off = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(off)
    checked = 0
    for addr in addresses_of(model):
        theirs = apply_removal_official(copy.deepcopy(model), [addr], off)
        if theirs is None:
            continue
        ours = apply_removal(copy.deepcopy(model), [addr])
        with torch.no_grad():
            a, b = forward(ours, inputs), forward(theirs, inputs)
        assert torch.equal(a, b), f"{name} {addr}: max diff {(a - b).abs().max()}"
        checked += 1
    print(f"{name}: {checked} single-address removals identical to the official identity modules")


def addresses_of(model):
    is_flux = isinstance(model, FluxTransformer2DModel)
    out = []
    for i, blk in enumerate(model.transformer_blocks):
        comps = ["block", "norm1", "norm1_context", "w_norm1", "w_norm1_context", "attn", "ff"]
        if is_flux or not blk.context_pre_only:
            comps.append("ff_context")
        out += [f"blocks.{i}" if c == "block" else f"blocks.{i}.{c}" for c in comps]
    if is_flux:
        n = len(model.transformer_blocks)
        for j in range(len(model.single_transformer_blocks)):
            out += [f"blocks.{n + j}" if c == "block" else f"blocks.{n + j}.{c}"
                    for c in ["block", "norm", "w_norm", "attn", "proj_mlp_out"]]
    return out


def num_params(model):
    return sum(p.numel() for p in model.parameters())


# ── inputs ─────────────────────────────────────────────────────────────────────────────────────
def sd3_inputs(cfg, seed, batch=2, h=16, w=12, text=5):
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(batch, cfg["in_channels"], h, w, generator=g),
        "encoder_hidden_states": torch.randn(batch, text, cfg["joint_attention_dim"], generator=g),
        "pooled_projections": torch.randn(batch, cfg["pooled_projection_dim"], generator=g),
        "timestep": torch.tensor([999.0, 314.5])[:batch],  # SD3: t = sigma * 1000
    }


def flux_inputs(cfg, seed, batch=2, gh=8, gw=6, text=5):
    g = torch.Generator().manual_seed(seed)
    img_ids = torch.zeros(gh, gw, 3)
    img_ids[..., 1] = torch.arange(gh)[:, None]
    img_ids[..., 2] = torch.arange(gw)[None, :]
    d = {
        "hidden_states": torch.randn(batch, gh * gw, cfg["in_channels"], generator=g),  # packed latents
        "encoder_hidden_states": torch.randn(batch, text, cfg["joint_attention_dim"], generator=g),
        "pooled_projections": torch.randn(batch, cfg["pooled_projection_dim"], generator=g),
        "timestep": torch.tensor([1.0, 0.4375])[:batch],  # FLUX: sigma in [0, 1]; x1000 inside
        "img_ids": img_ids.reshape(gh * gw, 3),
        "txt_ids": torch.zeros(text, 3),
    }
    if cfg.get("guidance_embeds"):
        d["guidance"] = torch.tensor([3.5, 1.0])[:batch]  # x1000 inside, as the pipeline passes it
    return d


def forward(model, inputs):
    return model(**inputs, return_dict=False)[0]


# ── model fixtures ─────────────────────────────────────────────────────────────────────────────
MODELS = {
    "sd3_tiny": dict(cls=SD3Transformer2DModel, seed=1, cfg=dict(
        sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=24, caption_projection_dim=16, pooled_projection_dim=12, out_channels=4,
        pos_embed_max_size=8, dual_attention_layers=[], qk_norm=None),
        removals=[["blocks.0.attn", "blocks.1.w_norm1_context"], ["blocks.0.norm1", "blocks.1.ff"]]),
    "sd35_tiny": dict(cls=SD3Transformer2DModel, seed=2, train=True, cfg=dict(
        sample_size=8, patch_size=2, in_channels=4, num_layers=3, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=24, caption_projection_dim=32, pooled_projection_dim=12, out_channels=4,
        pos_embed_max_size=10, dual_attention_layers=[0, 1], qk_norm="rms_norm"),
        removals=[["blocks.0.attn", "blocks.1.w_norm1", "blocks.1.ff_context", "blocks.2.norm1_context"],
                  ["blocks.1", "blocks.0.norm1", "blocks.2.w_norm1_context", "blocks.2.ff"],
                  ["blocks.0.w_norm1_context", "blocks.1.norm1_context", "blocks.2.attn", "blocks.0.ff"]]),
    "flux_tiny": dict(cls=FluxTransformer2DModel, seed=3, train=True, cfg=dict(
        patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=24, pooled_projection_dim=12, guidance_embeds=True,
        axes_dims_rope=[2, 2, 4])),
    "flux_tiny_noguid": dict(cls=FluxTransformer2DModel, seed=4, cfg=dict(
        patch_size=1, in_channels=8, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=20, pooled_projection_dim=10, guidance_embeds=False,
        axes_dims_rope=[4, 6, 6])),
}
MODELS["flux_tiny"]["removals"] = [
    ["blocks.0.norm1", "blocks.1.ff", "blocks.2.proj_mlp_out", "blocks.3.w_norm"],
    ["blocks.1", "blocks.2", "blocks.0.w_norm1_context", "blocks.3.attn"],
    ["blocks.0.attn", "blocks.1.norm1_context", "blocks.1.ff_context", "blocks.3.norm", "blocks.1.w_norm1"],
]
MODELS["flux_tiny_noguid"]["removals"] = [["blocks.0.ff_context", "blocks.1.proj_mlp_out", "blocks.2"]]


def build(spec):
    torch.manual_seed(spec["seed"])
    model = spec["cls"](**spec["cfg"]).float().eval()
    randomise(model, spec["seed"])
    return model


def t32(d):
    return {k: v.detach().to(torch.float32).contiguous() for k, v in d.items()}


def make_model(name, spec, manifest):
    out_dir = os.path.join(HERE, name)
    model = build(spec)
    model.save_pretrained(out_dir, safe_serialization=True)
    is_flux = spec["cls"] is FluxTransformer2DModel
    inputs = (flux_inputs if is_flux else sd3_inputs)(spec["cfg"], seed=100 + spec["seed"])
    with torch.no_grad():
        sample = forward(model, inputs)
    save_file(t32({**inputs, "sample": sample}), os.path.join(out_dir, "io.safetensors"), metadata={"format": "pt"})

    # Reload check: the saved folder gives the same output.
    re = spec["cls"].from_pretrained(out_dir).float().eval()
    with torch.no_grad():
        assert torch.equal(forward(re, inputs), sample), name

    entry = {"class": spec["cls"].__name__, "parameters": num_params(model), "sample_shape": list(sample.shape),
             "max_abs_sample": float(sample.abs().max()), "address_parameters": {}, "removals": []}
    for addr in addresses_of(model):
        m = apply_removal(copy.deepcopy(model), [addr])
        entry["address_parameters"][addr] = num_params(model) - num_params(m)

    if os.environ.get("HP_OFFICIAL_IDENTITY"):
        check_against_official(name, model, inputs, os.environ["HP_OFFICIAL_IDENTITY"])

    for k, rem in enumerate(spec.get("removals", [])):
        m = apply_removal(copy.deepcopy(model), rem)
        with torch.no_grad():
            s = forward(m, inputs)
        fname = f"removal_{k}.safetensors"
        save_file({"sample": s.contiguous()}, os.path.join(out_dir, fname), metadata={"removed": ",".join(rem)})
        entry["removals"].append({"file": f"{name}/{fname}", "removed": rem, "parameters_after": num_params(m),
                                  "max_abs_diff_from_full": float((s - sample).abs().max())})

    if spec.get("train"):
        g = torch.Generator().manual_seed(200 + spec["seed"])
        target = torch.randn(sample.shape, generator=g)
        model.zero_grad()
        out = forward(model, inputs)
        loss = torch.nn.functional.mse_loss(out, target)
        loss.backward()
        grads = {f"grad.{n}": p.grad.detach().clone() for n, p in model.named_parameters()}
        save_file(t32({"target": target, "loss": loss.detach().reshape([]), **grads}),
                  os.path.join(out_dir, "train.safetensors"), metadata={"loss": "mse_mean(sample, target)"})
        entry["loss"] = float(loss.detach())
    manifest[name] = entry


def make_layout(manifest):
    """SD3.5-Large-Turbo-shaped: 38 layers, rms qk-norm, no dual attention; tiny dims, bf16."""
    cfg = dict(sample_size=16, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=4,
               num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=8, pooled_projection_dim=8,
               out_channels=16, pos_embed_max_size=16, dual_attention_layers=[], qk_norm="rms_norm")
    spec = dict(cls=SD3Transformer2DModel, seed=38, cfg=cfg)
    model = build(spec).to(torch.bfloat16)
    out_dir = os.path.join(HERE, "sd35_large_turbo_layout")
    model.save_pretrained(out_dir, safe_serialization=True)
    manifest["sd35_large_turbo_layout"] = {"class": "SD3Transformer2DModel", "parameters": num_params(model),
                                           "dtype": "bf16"}


def make_schedules():
    cases = [
        ("sd35_large_turbo_4", dict(shift=3.0), 4, None),
        ("sd3_shift3_28", dict(shift=3.0), 28, None),
        ("flux_schnell_4", dict(shift=1.0), 4, None),
        ("one_step_shift3", dict(shift=3.0), 1, None),
        ("flux_dev_dynamic_28", dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                     base_image_seq_len=256, max_image_seq_len=4096), 28, 4096),
        ("dynamic_linear_8", dict(use_dynamic_shifting=True, time_shift_type="linear"), 8, 1024),
        ("terminal_6", dict(shift=3.0, shift_terminal=0.1), 6, None),
    ]
    out = {}
    for name, kw, steps, seq in cases:
        s = FlowMatchEulerDiscreteScheduler(**kw)
        mu = None
        if seq is not None:
            c = s.config
            m = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len)
            mu = seq * m + (c.base_shift - m * c.base_image_seq_len)  # diffusers calculate_shift
        train_sigmas = s.sigmas.clone()
        s.set_timesteps(steps, mu=mu)
        out[name] = {"config": {k: v for k, v in kw.items()}, "steps": steps, "image_seq_len": seq, "mu": mu,
                     "sigmas": [float(x) for x in s.sigmas], "timesteps": [float(x) for x in s.timesteps],
                     "training_sigmas_at": {str(i): float(train_sigmas[i]) for i in [0, 1, 500, 998, 999]}}
    # logit-normal density -> u -> index -> sigma, as the SD3 training scripts do
    g = torch.Generator().manual_seed(7)
    z = torch.randn(6, generator=g, dtype=torch.float64)
    s = FlowMatchEulerDiscreteScheduler(shift=3.0)
    u = torch.sigmoid(z)
    idx = (u * 1000).long()
    out["logit_normal_training"] = {"z": z.tolist(), "u": u.tolist(), "index": idx.tolist(),
                                    "sigma": [float(s.sigmas[i]) for i in idx]}
    # mode density check
    r = torch.tensor([0.0, 0.25, 0.5, 0.9], dtype=torch.float64)
    out["mode_density_1.29"] = {"r": r.tolist(),
                                "u": (1 - r - 1.29 * (torch.cos(math.pi * r / 2) ** 2 - 1 + r)).tolist()}
    with open(os.path.join(HERE, "schedules.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


def make_compat():
    d = os.path.join(HERE, "compat")
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    t = {
        "b.weight": torch.randn(3, 5, generator=g),
        "a/bias": torch.randn(7, generator=g).to(torch.float16),
        "z.bf": torch.randn(2, 3, generator=g).to(torch.bfloat16),
        "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "mask": torch.tensor([True, False, True]),
        "q": torch.arange(5, dtype=torch.uint8),
        "s8": torch.tensor([-3, 4], dtype=torch.int8),
        "i32": torch.tensor([7], dtype=torch.int32),
        "d": torch.tensor([1.5, -2.25], dtype=torch.float64),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "x_nan": torch.tensor([1.0, float("nan")]),
        "x_inf16": torch.tensor([float("inf"), 0.0]).to(torch.float16),
    }
    p = os.path.join(d, "python_written.safetensors")
    save_file(t, p, metadata={"format": "pt"})
    desc = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                "values": [float(x) if math.isfinite(float(x)) else str(float(x)) for x in v.flatten().tolist()]} for k, v in t.items()}
    with open(os.path.join(d, "python_written.json"), "w") as f:
        json.dump(desc, f, indent=1, sort_keys=True)
    # A file written by the Swift writer, if a test has recorded one, must load in Python.
    sw = os.path.join(d, "swift_written.safetensors")
    if os.path.exists(sw):
        back = load_file(sw)
        for k, v in t.items():
            if k.startswith("x_"):
                continue
            assert torch.equal(back[k], v), k
        print("swift_written.safetensors reads back in Python: OK")


def main():
    manifest = {}
    for name, spec in MODELS.items():
        make_model(name, spec, manifest)
        print(name, manifest[name]["parameters"], "params")
    make_layout(manifest)
    make_schedules()
    make_compat()
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    total = 0
    for root, _, files in os.walk(HERE):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"fixtures total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
