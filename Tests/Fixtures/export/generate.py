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
        save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(d, "diffusion_pytorch_model.safetensors"),
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
        wpath = os.path.join(d, "diffusion_pytorch_model.safetensors")
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

    with open(os.path.join(HERE, "index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
