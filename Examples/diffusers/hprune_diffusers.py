# Loads an `hprune export --format diffusers --layout loader` folder (config.json + hprune_loader.safetensors)
# into diffusers: the model with each
# removed sub-component (attn, ff, norms of a kept block) replaced by a parameter-free module that reproduces
# hprune's removal semantics (Docs/method.md "Removal semantics"). Needs only torch and diffusers.
#
#     import hprune_diffusers
#     transformer = hprune_diffusers.load("out/sd35-hpp20")        # SD3Transformer2DModel / FluxTransformer2DModel
#     pipe = StableDiffusion3Pipeline.from_pretrained(BASE, transformer=transformer)
#
# Whole removed blocks need no loader: hprune renumbers the kept blocks and rewrites num_layers (plain
# from_pretrained loads those). This module only handles what diffusers has no form for, listed in
# config.json under `hprune_removed` (addresses as `blocks.N.COMPONENT`, N a global block index of the export:
# FLUX single block j is N = num_layers + j). It refuses a folder whose missing weights are not exactly those of
# the removed modules, so a model never runs with newly initialised weights.
import json
import os

import torch
from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

__all__ = ["load", "apply_removals", "owned_prefixes"]

CLASSES = {"SD3Transformer2DModel": SD3Transformer2DModel, "FluxTransformer2DModel": FluxTransformer2DModel}


# ── parameter-free replacements (the official HierarchicalPrune identity modules' semantics) ──────────
class RemovedBlock(torch.nn.Module):
    """A whole removed block: (c, x) pass through unchanged (SD3 / FLUX double and single blocks)."""

    def forward(self, hidden_states, encoder_hidden_states, *args, **kwargs):
        return encoder_hidden_states, hidden_states


class RemovedAttention(torch.nn.Module):
    """A removed attention returns its inputs (the normalised, modulated streams), not zero."""

    def forward(self, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            return hidden_states, encoder_hidden_states
        return hidden_states


class RemovedFeedForward(torch.nn.Module):
    """A removed feed-forward returns its (normalised, modulated) input."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class RemovedAdaNormZero(torch.nn.Module):
    """Removed norm1 / norm1_context: no normalisation (or plain LayerNorm for w_norm1*), gates 1, shift/scale 0."""

    def __init__(self, dim=None, dual=False, context_pre_only=False):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) if dim else None
        self.dual, self.context_pre_only = dual, context_pre_only

    def forward(self, x, *args, **kwargs):
        ones = torch.ones(x.shape[0], x.shape[-1], dtype=x.dtype, device=x.device)
        zeros = torch.zeros_like(ones)
        if self.norm is not None:
            x = self.norm(x)
        if self.dual:  # SD3.5 dual attention: norm_x, gate_msa, shift_mlp, scale_mlp, gate_mlp, norm_x2, gate_msa2
            return x, ones, zeros, zeros, ones, x, ones
        if self.context_pre_only:  # AdaLayerNormContinuous of the last SD3 block returns only the context
            return x
        return x, ones, zeros, zeros, ones


class RemovedAdaNormSingle(torch.nn.Module):
    """Removed FLUX single-block norm: (x or LayerNorm(x), gate 1)."""

    def __init__(self, dim=None):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) if dim else None

    def forward(self, x, *args, **kwargs):
        gate = torch.ones(x.shape[0], x.shape[-1], dtype=x.dtype, device=x.device)
        return (self.norm(x) if self.norm is not None else x), gate


def _single_forward_without_proj_mlp_out(self, hidden_states, encoder_hidden_states, temb, image_rotary_emb=None,
                                         joint_attention_kwargs=None):
    """FLUX single block with proj_mlp and proj_out removed: x += gate * attn(n) on the joint sequence."""
    text_len = encoder_hidden_states.shape[1]
    x = torch.cat([encoder_hidden_states, hidden_states], dim=1)
    n, gate = self.norm(x, emb=temb)
    a = self.attn(hidden_states=n, image_rotary_emb=image_rotary_emb, **(joint_attention_kwargs or {}))
    x = x + gate.unsqueeze(1) * a
    return x[:, :text_len], x[:, text_len:]


# ── addresses ──────────────────────────────────────────────────────────────────────────────────────
def _parse(address):
    parts = address.split(".")
    if len(parts) not in (2, 3) or parts[0] != "blocks" or not parts[1].isdigit():
        raise ValueError(f"hprune_removed: '{address}' is not an address (blocks.N or blocks.N.COMPONENT)")
    return int(parts[1]), (parts[2] if len(parts) == 3 else "block")


def _block(model, index):
    """(module list, position, state_dict prefix, is_single) of global block `index`."""
    n = len(model.transformer_blocks)
    if index < n:
        return model.transformer_blocks, index, f"transformer_blocks.{index}", False
    singles = getattr(model, "single_transformer_blocks", None)
    if singles is None or index - n >= len(singles):
        raise ValueError(f"hprune_removed: block {index} does not exist in this model")
    return singles, index - n, f"single_transformer_blocks.{index - n}", True


OWNED = {"block": [""], "norm1": ["norm1."], "w_norm1": ["norm1."], "norm1_context": ["norm1_context."],
         "w_norm1_context": ["norm1_context."], "attn": ["attn.", "attn2."], "ff": ["ff."], "ff_context": ["ff_context."],
         "norm": ["norm."], "w_norm": ["norm."], "proj_mlp_out": ["proj_mlp.", "proj_out."]}


def owned_prefixes(model, addresses):
    """state_dict name prefixes whose tensors the removal of `addresses` leaves unused (absent from the export)."""
    out = []
    for a in addresses:
        i, comp = _parse(a)
        _, _, prefix, _ = _block(model, i)
        if comp not in OWNED:
            raise ValueError(f"hprune_removed: unknown component '{comp}' in '{a}'")
        out += [prefix + "." + p if p else prefix + "." for p in OWNED[comp]]
    return out


def apply_removals(model, addresses):
    """Replaces the removed modules of `model` in place (hprune's semantics) and returns it."""
    dim = model.inner_dim if hasattr(model, "inner_dim") else model.config.num_attention_heads * model.config.attention_head_dim
    for a in addresses:
        i, comp = _parse(a)
        blocks, j, _, single = _block(model, i)
        blk = blocks[j]
        if comp == "block":
            blocks[j] = RemovedBlock()
        elif single:
            if comp == "norm":
                blk.norm = RemovedAdaNormSingle()
            elif comp == "w_norm":
                blk.norm = RemovedAdaNormSingle(dim)
            elif comp == "attn":
                blk.attn = RemovedAttention()
            elif comp == "proj_mlp_out":
                blk.proj_mlp, blk.proj_out = RemovedFeedForward(), RemovedFeedForward()
                blk.forward = _single_forward_without_proj_mlp_out.__get__(blk)
            else:
                raise ValueError(f"hprune_removed: a FLUX single block has no '{comp}' ('{a}')")
        else:
            dual = getattr(blk, "use_dual_attention", False)
            cpo = getattr(blk, "context_pre_only", False)
            if comp in ("norm1", "w_norm1"):
                blk.norm1 = RemovedAdaNormZero(dim if comp == "w_norm1" else None, dual=dual)
            elif comp in ("norm1_context", "w_norm1_context"):
                blk.norm1_context = RemovedAdaNormZero(dim if comp == "w_norm1_context" else None, context_pre_only=cpo)
            elif comp == "attn":
                blk.attn = RemovedAttention()
                if getattr(blk, "attn2", None) is not None:
                    blk.attn2 = RemovedAttention()
            elif comp == "ff":
                blk.ff = RemovedFeedForward()
            elif comp == "ff_context" and getattr(blk, "ff_context", None) is not None:
                blk.ff_context = RemovedFeedForward()
            else:
                raise ValueError(f"hprune_removed: block {i} has no '{comp}' ('{a}')")
    return model


WEIGHTS = "hprune_loader.safetensors"   # not diffusion_pytorch_model.safetensors: plain from_pretrained refuses the folder


def load(path, torch_dtype=None):
    """The diffusers transformer of an hprune loader-layout export, removed sub-components replaced.

    Raises ValueError when a weight is missing that no removal accounts for, or when the folder has weights the
    model does not use.
    """
    from safetensors.torch import load_file

    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    cls = CLASSES.get(config.get("_class_name"))
    if cls is None:
        raise ValueError(f"{path}/config.json: _class_name {config.get('_class_name')!r} is not an SD3 or FLUX transformer")
    if "quantization_config" in config:
        raise ValueError(f"{path}: a quantised loader-layout export is not supported; export the model before "
                         "quantising and quantise after load()")
    removed = list(config.pop("hprune_removed", []))
    weights = os.path.join(path, WEIGHTS)
    if not os.path.exists(weights):
        weights = os.path.join(path, "diffusion_pytorch_model.safetensors")
    model = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    state = load_file(weights)
    prefixes = owned_prefixes(model, removed)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexplained = [k for k in missing if not any(k.startswith(p) for p in prefixes)]
    if unexplained or unexpected:
        raise ValueError(f"{path}: weights do not match the model: missing {unexplained}, unexpected {unexpected}; "
                         "re-export with hprune export --format diffusers --layout loader")
    model = apply_removals(model, removed).eval()
    return model.to(torch_dtype) if torch_dtype is not None else model
