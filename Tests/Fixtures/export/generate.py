#!/usr/bin/env python3
# Reference fixtures for `hprune export` (Tests/CLITests/ExportTests.swift), generated once with diffusers and
# committed; the Swift build and tests never run this. Run: /root/venv/bin/python Tests/Fixtures/export/generate.py
#
# The teachers are the committed tiny models of ../models (sd3_tiny, sd35_tiny, flux_tiny) and their inputs
# (../models/<teacher>/io.safetensors). Writes, next to this file:
#   native_<case>/config.json + diffusion_pytorch_model.safetensors
#       the block-pruned model built the diffusers way: the kept blocks' tensors copied under renumbered names
#       into a model constructed from the rewritten config (num_layers, num_single_layers,
#       dual_attention_layers); when the last SD3 block is removed, the new last block is context_pre_only and
#       its norm1_context.linear is the scale_msa then shift_msa rows of the old 6-chunk one. Loaded back with
#       from_pretrained: no missing or unexpected key.
#   native_<case>/sample.safetensors  `sample`: diffusers forward of that folder on the teacher's inputs; checked
#       here against the teacher with whole-block identities (the official removal semantics), rel err <= 1e-6.
#   loader_<case>/config.json, tensors.json, sample.safetensors  the --layout loader export (renumbered blocks,
#       sub-component tensors absent, `hprune_removed` renumbered), built here, loaded with
#       Examples/diffusers/hprune_diffusers.load and run: `sample`, checked here against the teacher with the
#       official identities for the original addresses. The weights file is deleted after the run; tensors.json
#       keeps each tensor's dtype, shape and SHA-256 (the Swift test compares hprune's export with them).
#   native_sd3_nf4.safetensors  bitsandbytes nf4 (block 64) of every 2-D weight of native_sd3, as
#       Linear4bit._save_to_state_dict writes it.
#   gguf_quants.safetensors  `input` F32 [8, 64] (random rows, a zero row, ties, one-sign rows) and, per type,
#       `<type>` U8: gguf.quants.quantize(input, type) for bf16, q8_0, q5_1, q5_0, q4_1, q4_0 (gguf-py).
#   gguf_<case>_<type>.gguf  native_<case> as ComfyUI-GGUF's tools/convert.py writes it (gguf.GGUFWriter):
#       original-checkpoint key names (FLUX double_blocks / single_blocks with fused qkv and linear1, SD3
#       joint_blocks with fused qkv; final_layer and the pre-only context modulation in shift, scale order),
#       checked here by converting back with diffusers' single-file converters; tensors sorted by name; 2-D Linear
#       weights quantised to <type>, 1-D / <= 1024-element tensors F32, other tensors F16 (convert.py's policy);
#       one extra key, `hprune.diffusers_config` (the config.json, json.dumps sort_keys).
#   lora_sd35.safetensors  a LoRA for the teacher sd35_tiny in diffusers' PEFT key layout
#       (`transformer.<module>.lora_A.weight` [r, in], `.lora_B.weight` [out, r]) on several modules of every block;
#   lora_sd35_native/…, lora_sd35_loader/…  the same LoRA remapped onto native_sd35 / loader_sd35: keys renumbered,
#       adapters of removed modules dropped (listed in dropped.json), lora_B rows of the new context_pre_only
#       block's norm1_context.linear cut to scale then shift; checked here: teacher + LoRA merged, then pruned ==
#       pruned, then the remapped LoRA merged (forward, rel err <= 1e-6).
#   index.json  every case: teacher, removed addresses, expected config keys, errors.
import copy
import hashlib
import importlib.util
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
MODELS = os.path.join(HERE, "..", "models")
sys.path.insert(0, os.path.join(ROOT, "Examples", "diffusers"))
import hprune_diffusers  # noqa: E402

spec = importlib.util.spec_from_file_location("models_generate", os.path.join(MODELS, "generate.py"))
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)   # apply_removal: the official semantics, checked there against the official code
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel  # noqa: E402

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

NATIVE = {
    "sd3": ("sd3_tiny", ["blocks.1"]),                 # the last block: block 0 becomes context_pre_only
    "sd35": ("sd35_tiny", ["blocks.0", "blocks.2"]),   # qk-norm, dual attention renumbered [1] -> [0], last removed
    "flux": ("flux_tiny", ["blocks.0", "blocks.2"]),   # double 1 -> 0, single 1 -> 0
}
LOADER = {
    # ff_context of the new last block is gone with context_pre_only, so its address is dropped
    "sd3": ("sd3_tiny", ["blocks.1", "blocks.0.ff", "blocks.0.ff_context"]),
    "sd35": ("sd35_tiny", ["blocks.0", "blocks.1.attn", "blocks.1.ff_context", "blocks.2.w_norm1", "blocks.2.norm1_context"]),
    "flux": ("flux_tiny", ["blocks.1.norm1", "blocks.0.ff", "blocks.2", "blocks.3.proj_mlp_out"]),
}


def teacher(name):
    d = os.path.join(MODELS, name)
    with open(os.path.join(d, "config.json")) as f:
        cls = {"SD3Transformer2DModel": SD3Transformer2DModel, "FluxTransformer2DModel": FluxTransformer2DModel}[json.load(f)["_class_name"]]
    model = cls.from_pretrained(d).float().eval()
    io = load_file(os.path.join(d, "io.safetensors"))
    inputs = {k: v for k, v in io.items() if k != "sample"}
    return model, inputs


def parse(a):
    p = a.split(".")
    return int(p[1]), (p[2] if len(p) == 3 else "block")


def prune_native(model, addresses):
    """(config, state_dict, renumbered sub-component addresses) of the renumbered diffusers model."""
    cfg = dict(model.config)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    sd = model.state_dict()
    blocks = {parse(a)[0] for a in addresses if parse(a)[1] == "block"}
    is_flux = isinstance(model, FluxTransformer2DModel)
    n = cfg["num_layers"]
    kept = [i for i in range(n) if i not in blocks]
    new = {k: v for k, v in sd.items() if not k.startswith("transformer_blocks.") and not k.startswith("single_transformer_blocks.")}
    remap = {}
    for k, i in enumerate(kept):
        remap[i] = k
        pre = f"transformer_blocks.{i}."
        for key, v in sd.items():
            if key.startswith(pre):
                new[f"transformer_blocks.{k}." + key[len(pre):]] = v
    cfg["num_layers"] = len(kept)
    if is_flux:
        ns = cfg["num_single_layers"]
        kept_s = [j for j in range(ns) if n + j not in blocks]
        for k, j in enumerate(kept_s):
            remap[n + j] = len(kept) + k
            pre = f"single_transformer_blocks.{j}."
            for key, v in sd.items():
                if key.startswith(pre):
                    new[f"single_transformer_blocks.{k}." + key[len(pre):]] = v
        cfg["num_single_layers"] = len(kept_s)
    else:
        cfg["dual_attention_layers"] = [remap[i] for i in cfg["dual_attention_layers"] if i in remap]
        if kept[-1] != n - 1:   # the new last block becomes context_pre_only
            D = model.inner_dim
            last = f"transformer_blocks.{len(kept) - 1}."
            for key in list(new):
                if key.startswith(last + "attn.to_add_out.") or key.startswith(last + "ff_context."):
                    del new[key]
            w, b = new[last + "norm1_context.linear.weight"], new[last + "norm1_context.linear.bias"]
            new[last + "norm1_context.linear.weight"] = torch.cat([w[D:2 * D], w[0:D]]).contiguous()   # scale, shift
            new[last + "norm1_context.linear.bias"] = torch.cat([b[D:2 * D], b[0:D]]).contiguous()
    subs = []
    for a in addresses:
        i, comp = parse(a)
        if comp == "block":
            continue
        k = remap[i]
        if not is_flux and k == len(kept) - 1 and kept[-1] != n - 1 and comp == "ff_context":
            continue    # the converted block has no ff_context
        subs.append(f"blocks.{k}.{comp}")
    return cfg, new, sorted(subs, key=lambda s: (parse(s)[0], ["block", "norm1", "norm1_context", "w_norm1", "w_norm1_context", "attn", "ff", "ff_context", "norm", "w_norm", "proj_mlp_out"].index(parse(s)[1])))


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def write_folder(d, cfg, cls, sd, extra_config=None):
    if os.path.exists(d):
        shutil.rmtree(d)
    model = cls(**cfg).float().eval()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    os.makedirs(d)
    if extra_config is None:
        assert not missing and not unexpected, (d, missing, unexpected)
        model.save_pretrained(d, safe_serialization=True)
    else:
        # loader layout: only the tensors given (removed sub-components absent) + hprune_removed
        save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(d, hprune_diffusers.WEIGHTS),
                  metadata={"format": "pt"})
        model.save_config(d)
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        c.update(extra_config)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=2, sort_keys=True)
            f.write("\n")
    return model


def main():
    index = {"native": {}, "loader": {}}
    for case, (tname, removed) in NATIVE.items():
        model, inputs = teacher(tname)
        cfg, sd, subs = prune_native(model, removed)
        assert not subs
        d = os.path.join(HERE, f"native_{case}")
        write_folder(d, cfg, type(model), sd)
        back, info = type(model).from_pretrained(d, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        back = back.float().eval()
        with torch.no_grad():
            got = ref.forward(back, inputs)
            want = ref.forward(ref.apply_removal(copy.deepcopy(model), removed), inputs)
        e = rel_err(got, want)
        assert e <= 1e-6, (case, e)
        save_file({"sample": got.contiguous()}, os.path.join(d, "sample.safetensors"), metadata={"format": "pt"})
        index["native"][case] = {"teacher": f"models/{tname}", "removed": removed, "rel_err_vs_identity_blocks": e,
                                 "num_layers": cfg["num_layers"], "num_single_layers": cfg.get("num_single_layers"),
                                 "dual_attention_layers": cfg.get("dual_attention_layers")}
        print(f"native_{case}: {len(sd)} tensors, rel err vs identity blocks {e:.2e}")
        if case == "sd3":
            import bitsandbytes.functional as F
            out = {}
            for k, v in sorted(sd.items()):
                if k.endswith(".weight") and v.dim() == 2:
                    packed, state = F.quantize_4bit(v.float().contiguous(), blocksize=64, compress_statistics=False, quant_type="nf4")
                    out[k] = packed.contiguous()
                    for sk, sv in state.as_dict(packed=True).items():
                        out[k + "." + sk] = sv.contiguous()
            save_file(out, os.path.join(HERE, "native_sd3_nf4.safetensors"), metadata={"format": "pt"})

    for case, (tname, removed) in LOADER.items():
        model, inputs = teacher(tname)
        cfg, sd, subs = prune_native(model, removed)
        probe = type(model)(**cfg)
        gone = hprune_diffusers.owned_prefixes(probe, subs)
        kept = {k: v for k, v in sd.items() if not any(k.startswith(p) for p in gone)}
        d = os.path.join(HERE, f"loader_{case}")
        write_folder(d, cfg, type(model), kept, extra_config={"hprune_removed": subs})
        loaded = hprune_diffusers.load(d).float()
        with torch.no_grad():
            got = ref.forward(loaded, inputs)
            want = ref.forward(ref.apply_removal(copy.deepcopy(model), removed), inputs)
        e = rel_err(got, want)
        assert e <= 1e-6, (case, e)
        save_file({"sample": got.contiguous()}, os.path.join(d, "sample.safetensors"), metadata={"format": "pt"})
        # Keep the fixtures small: the weights are replaced by each tensor's dtype, shape and SHA-256 of its bytes.
        try:   # plain from_pretrained must refuse the loader layout (no diffusion_pytorch_model.safetensors)
            type(model).from_pretrained(d)
            raise AssertionError(f"{d}: from_pretrained accepted a loader-layout folder")
        except (OSError, EnvironmentError):
            pass
        wpath = os.path.join(d, hprune_diffusers.WEIGHTS)
        tensors = {}
        for k, v in load_file(wpath).items():
            raw = v.contiguous().view(torch.uint8).numpy().tobytes()
            tensors[k] = {"dtype": "F32", "shape": list(v.shape), "sha256": hashlib.sha256(raw).hexdigest()}
        os.remove(wpath)
        with open(os.path.join(d, "tensors.json"), "w") as f:
            json.dump(tensors, f, indent=1, sort_keys=True)
            f.write("\n")
        index["loader"][case] = {"teacher": f"models/{tname}", "removed": removed, "hprune_removed": subs,
                                 "rel_err_vs_official_identities": e}
        print(f"loader_{case}: hprune_removed {subs}, rel err vs official identities {e:.2e}")

    make_gguf(index)
    make_lora(index)
    with open(os.path.join(HERE, "index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


# ── GGUF (ComfyUI-GGUF layout) ─────────────────────────────────────────────────────────────────────
GGUF_TYPES = ["bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]
GGUF_CASES = {"sd3": "bf16", "sd35": "q8_0", "flux": "q4_0", "flux_q5_1": "q5_1"}


def swap_scale_shift(t):
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def to_original(cls_name, cfg, sd):
    """diffusers state dict -> original (BFL / SAI) checkpoint keys, the inverse of diffusers' single-file converters."""
    sd = dict(sd)
    o = {}

    def mv(dst, src):
        for suf in (".weight", ".bias"):
            if src + suf in sd:
                o[dst + suf] = sd.pop(src + suf)

    def cat(dst, srcs):
        for suf in (".weight", ".bias"):
            o[dst + suf] = torch.cat([sd.pop(s + suf) for s in srcs], dim=0)

    if cls_name == "FluxTransformer2DModel":
        mv("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1")
        mv("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2")
        mv("vector_in.in_layer", "time_text_embed.text_embedder.linear_1")
        mv("vector_in.out_layer", "time_text_embed.text_embedder.linear_2")
        mv("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1")
        mv("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2")
        mv("txt_in", "context_embedder")
        mv("img_in", "x_embedder")
        for i in range(cfg["num_layers"]):
            b, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
            mv(d + "img_mod.lin", b + "norm1.linear")
            mv(d + "txt_mod.lin", b + "norm1_context.linear")
            cat(d + "img_attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"])
            cat(d + "txt_attn.qkv", [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"])
            o[d + "img_attn.norm.query_norm.scale"] = sd.pop(b + "attn.norm_q.weight")
            o[d + "img_attn.norm.key_norm.scale"] = sd.pop(b + "attn.norm_k.weight")
            o[d + "txt_attn.norm.query_norm.scale"] = sd.pop(b + "attn.norm_added_q.weight")
            o[d + "txt_attn.norm.key_norm.scale"] = sd.pop(b + "attn.norm_added_k.weight")
            mv(d + "img_mlp.0", b + "ff.net.0.proj")
            mv(d + "img_mlp.2", b + "ff.net.2")
            mv(d + "txt_mlp.0", b + "ff_context.net.0.proj")
            mv(d + "txt_mlp.2", b + "ff_context.net.2")
            mv(d + "img_attn.proj", b + "attn.to_out.0")
            mv(d + "txt_attn.proj", b + "attn.to_add_out")
        for i in range(cfg["num_single_layers"]):
            b, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
            mv(d + "modulation.lin", b + "norm.linear")
            cat(d + "linear1", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v", b + "proj_mlp"])
            o[d + "norm.query_norm.scale"] = sd.pop(b + "attn.norm_q.weight")
            o[d + "norm.key_norm.scale"] = sd.pop(b + "attn.norm_k.weight")
            mv(d + "linear2", b + "proj_out")
    else:
        n = cfg["num_layers"]
        o["pos_embed"] = sd.pop("pos_embed.pos_embed")
        mv("x_embedder.proj", "pos_embed.proj")
        mv("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1")
        mv("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2")
        mv("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1")
        mv("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2")
        mv("context_embedder", "context_embedder")
        for i in range(n):
            b, x, c = f"transformer_blocks.{i}.", f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block."
            cat(x + "attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"])
            cat(c + "attn.qkv", [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"])
            for dst, src in [(x + "attn.ln_q", "attn.norm_q"), (x + "attn.ln_k", "attn.norm_k"),
                             (c + "attn.ln_q", "attn.norm_added_q"), (c + "attn.ln_k", "attn.norm_added_k"),
                             (x + "attn2.ln_q", "attn2.norm_q"), (x + "attn2.ln_k", "attn2.norm_k")]:
                if b + src + ".weight" in sd:
                    o[dst + ".weight"] = sd.pop(b + src + ".weight")
            mv(x + "attn.proj", b + "attn.to_out.0")
            mv(c + "attn.proj", b + "attn.to_add_out")
            if b + "attn2.to_q.weight" in sd:
                cat(x + "attn2.qkv", [b + "attn2.to_q", b + "attn2.to_k", b + "attn2.to_v"])
                mv(x + "attn2.proj", b + "attn2.to_out.0")
            mv(x + "adaLN_modulation.1", b + "norm1.linear")
            if i == n - 1:
                for suf in (".weight", ".bias"):
                    o[c + "adaLN_modulation.1" + suf] = swap_scale_shift(sd.pop(b + "norm1_context.linear" + suf))
            else:
                mv(c + "adaLN_modulation.1", b + "norm1_context.linear")
            mv(x + "mlp.fc1", b + "ff.net.0.proj")
            mv(x + "mlp.fc2", b + "ff.net.2")
            mv(c + "mlp.fc1", b + "ff_context.net.0.proj")
            mv(c + "mlp.fc2", b + "ff_context.net.2")
    mv("final_layer.linear", "proj_out")
    for suf in (".weight", ".bias"):
        o["final_layer.adaLN_modulation.1" + suf] = swap_scale_shift(sd.pop("norm_out.linear" + suf))
    assert not sd, f"unmapped: {sorted(sd)}"
    return {k: v.contiguous() for k, v in o.items()}


def gguf_type(name, t, qtype):
    """convert.py's per-tensor policy, with 2-D Linear weights at the requested type."""
    import gguf
    Q = gguf.GGMLQuantizationType
    if t.dim() == 1 or t.numel() <= 1024:
        return Q.F32
    if t.dim() == 2 and name.endswith(".weight"):
        want = getattr(Q, qtype.upper())
        if want == Q.BF16 or t.shape[-1] % 32 == 0:
            return want
    return Q.BF16 if t.dtype == torch.bfloat16 else Q.F16


def make_gguf(index):
    import gguf
    import numpy as np
    from diffusers.loaders.single_file_utils import (convert_flux_transformer_checkpoint_to_diffusers,
                                                    convert_sd3_transformer_checkpoint_to_diffusers)
    Q = gguf.GGMLQuantizationType
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 64, generator=g)
    x[1] = 0                                                 # all-zero block: d = 0
    x[2, :32] = torch.arange(32) / 31.0 - 0.5                # many ties at .5 after scaling
    x[3] = x[3].abs() + 0.1                                  # one-sign rows (min > 0 for q*_1)
    x[4] = -x[4].abs()
    x[5, :32] = 1.0
    x[5, 32:] = torch.linspace(-3, 3, 32)
    x[6] *= 1e-3
    x[7] *= 1e3
    out = {"input": x}
    for t in GGUF_TYPES:
        out[t] = torch.from_numpy(np.ascontiguousarray(gguf.quants.quantize(x.numpy(), getattr(Q, t.upper()))).reshape(-1).copy())
    save_file(out, os.path.join(HERE, "gguf_quants.safetensors"), metadata={"format": "pt"})
    index["gguf"] = {"quants": GGUF_TYPES, "files": {}}
    ftypes = {"bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
              "q5_1": gguf.LlamaFileType.MOSTLY_Q5_1, "q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
              "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}
    for case, qtype in GGUF_CASES.items():
        base = case.split("_")[0]
        d = os.path.join(HERE, f"native_{base}")
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        sd = load_file(os.path.join(d, "diffusion_pytorch_model.safetensors"))
        orig = to_original(cfg["_class_name"], cfg, sd)
        # Check the mapping with diffusers' own converter (original -> diffusers).
        if base == "flux":
            # diffusers' converter hard-codes FLUX.1's inner_dim 3072; run its source with the tiny model's width.
            import inspect
            import diffusers.loaders.single_file_utils as sfu
            src = inspect.getsource(convert_flux_transformer_checkpoint_to_diffusers)
            D = cfg["num_attention_heads"] * cfg["attention_head_dim"]
            assert "inner_dim = 3072" in src
            ns = dict(vars(sfu))
            exec(src.replace("inner_dim = 3072", f"inner_dim = {D}"), ns)
            convert = ns["convert_flux_transformer_checkpoint_to_diffusers"]
        else:
            convert = convert_sd3_transformer_checkpoint_to_diffusers
        conv = convert({k: v.clone() for k, v in orig.items()})
        assert set(conv) == set(sd), (case, set(conv) ^ set(sd))
        for k in sd:
            assert torch.equal(conv[k], sd[k]), (case, k)
        arch = "flux" if base == "flux" else "sd3"
        path = os.path.join(HERE, f"gguf_{case}.gguf")
        w = gguf.GGUFWriter(path=None, arch=arch)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_file_type(ftypes[qtype])
        # hprune's own key (ComfyUI-GGUF ignores it): the diffusers config, so `hprune import` needs nothing else.
        w.add_string("hprune.diffusers_config", json.dumps(cfg, sort_keys=True))
        types = {}
        for k in sorted(orig):
            t = orig[k]
            q = gguf_type(k, t, qtype)
            w.add_tensor(k, gguf.quants.quantize(t.float().numpy(), q), raw_dtype=q)
            types[k] = q.name
        w.write_header_to_file(path=path)
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        r = gguf.GGUFReader(path)
        assert [t.name for t in r.tensors] == sorted(orig)
        index["gguf"]["files"][f"gguf_{case}.gguf"] = {"from": f"native_{base}", "quant": qtype, "arch": arch, "types": types}
        print(f"gguf_{case}.gguf: {len(orig)} tensors, {os.path.getsize(path)} bytes")


# ── LoRA remap ────────────────────────────────────────────────────────────────────────────────────
LORA_MODULES = ["attn.to_q", "attn.add_k_proj", "attn.to_add_out", "attn2.to_v", "ff.net.0.proj", "ff_context.net.2",
                "norm1_context.linear", "norm1.linear"]


def merged(model, lora, prefix="transformer."):
    """A copy of `model` with W += B @ A for every adapter (scale 1)."""
    m = copy.deepcopy(model)
    sd = m.state_dict()
    for k in lora:
        if k.endswith(".lora_A.weight"):
            mod = k[len(prefix):-len(".lora_A.weight")]
            sd[mod + ".weight"] = sd[mod + ".weight"] + lora[k.replace("lora_A", "lora_B")] @ lora[k]
    m.load_state_dict(sd)
    return m


def make_lora(index):
    model, inputs = teacher("sd35_tiny")
    g = torch.Generator().manual_seed(11)
    sd = model.state_dict()
    lora = {}
    r = 2
    for i in range(model.config.num_layers):
        for mod in LORA_MODULES + []:
            w = sd.get(f"transformer_blocks.{i}.{mod}.weight")
            if w is None:
                continue
            key = f"transformer.transformer_blocks.{i}.{mod}"
            lora[key + ".lora_A.weight"] = 0.1 * torch.randn(r, w.shape[1], generator=g)
            lora[key + ".lora_B.weight"] = 0.1 * torch.randn(w.shape[0], r, generator=g)
    for mod in ["context_embedder", "proj_out"]:
        w = sd[mod + ".weight"]
        lora[f"transformer.{mod}.lora_A.weight"] = 0.1 * torch.randn(r, w.shape[1], generator=g)
        lora[f"transformer.{mod}.lora_B.weight"] = 0.1 * torch.randn(w.shape[0], r, generator=g)
    save_file(lora, os.path.join(HERE, "lora_sd35.safetensors"), metadata={"format": "pt"})
    D = model.inner_dim
    index["lora"] = {}
    for case in ["native", "loader"]:
        tname, removed = (NATIVE if case == "native" else LOADER)["sd35"]
        cfg, psd, subs = prune_native(model, removed)
        blocks = {parse(a)[0] for a in removed if parse(a)[1] == "block"}
        kept = [i for i in range(model.config.num_layers) if i not in blocks]
        remap = {i: k for k, i in enumerate(kept)}
        converted = kept[-1] if kept[-1] != model.config.num_layers - 1 else None
        probe = type(model)(**cfg)
        gone = hprune_diffusers.owned_prefixes(probe, subs)
        present = {k for k in psd if not any(k.startswith(p) for p in gone)}
        out, dropped = {}, set()
        for k, v in lora.items():
            mod = k[len("transformer."):].rsplit(".lora_", 1)[0]
            suffix = k[len("transformer.") + len(mod):]
            new = mod
            if mod.startswith("transformer_blocks."):
                i = int(mod.split(".")[1])
                if i not in remap:
                    dropped.add(mod)
                    continue
                new = f"transformer_blocks.{remap[i]}." + mod.split(".", 2)[2]
            if new + ".weight" not in present:
                dropped.add(mod)
                continue
            if converted is not None and mod == f"transformer_blocks.{converted}.norm1_context.linear" and suffix == ".lora_B.weight":
                v = torch.cat([v[D:2 * D], v[0:D]]).contiguous()
            out["transformer." + new + suffix] = v
        d = os.path.join(HERE, f"lora_sd35_{case}")
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        save_file(out, os.path.join(d, "lora_sd35.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(d, "dropped.json"), "w") as f:
            json.dump(sorted(dropped), f, indent=1)
            f.write("\n")
        if case == "native":
            # merge-then-prune == prune-then-merge(remapped)
            with torch.no_grad():
                a = ref.forward(ref.apply_removal(merged(model, lora), removed), inputs)
                cfg2, psd2, _ = prune_native(merged(model, lora), removed)
                pruned = type(model)(**cfg2).float().eval()
                pruned.load_state_dict(psd)
                b = ref.forward(merged(pruned, out), inputs)
            e = rel_err(b, a)
            assert e <= 1e-6, e
            index["lora"][case] = {"kept": len(out), "dropped": sorted(dropped), "rel_err_merge_then_prune": e}
        else:
            index["lora"][case] = {"kept": len(out), "dropped": sorted(dropped)}
        print(f"lora_sd35_{case}: {len(out)} tensors kept, {len(dropped)} modules dropped")


if __name__ == "__main__":
    main()
