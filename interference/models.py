"""Models: build a small TransformerBridge, load a Hugging Face model from disk, save/load, and
the one table of **parameter groups** that freezing and attribution share.

Why TransformerBridge for both: hook names (``blocks.{i}.hook_resid_post`` ...) are then the
same on our from-scratch model and on GPT-2/Llama/Qwen2 loaded from a local path, so probes,
metrics and methods never branch on where a model came from.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from interference.io import atomic_save, atomic_write_json


class ModelError(RuntimeError):
    """A model or checkpoint we cannot use."""


def default_device() -> torch.device:
    """CUDA when present, else CPU: every entry point calls this unless told otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return default_device()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu or auto.")
    return dev


@dataclass(frozen=True)
class ModelConfig:
    # 4 layers x d128 (0.8M params) is what 2 CPU cores pre-train in minutes and still shows
    # format generalisation to statement-only facts (../shared/CALIBRATION.md).
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 32  # longest prompt + answer in the world is ~16 tokens
    act_fn: str = "gelu"
    normalization_type: str = "LN"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ModelError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; pick matching sizes.")
        if min(self.n_layers, self.d_model, self.n_heads, self.d_mlp, self.n_ctx) <= 0:
            raise ModelError("model sizes must be positive.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**d)

    @classmethod
    def quick(cls, seed: int = 0) -> "ModelConfig":
        return cls(n_layers=2, d_model=64, n_heads=4, d_mlp=256, n_ctx=32, seed=seed)


def build_model(cfg: ModelConfig, vocab_size: int, tokenizer=None, device: str | torch.device | None = None):
    """A randomly initialised TL-native model behind a TransformerBridge (no hub access)."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    tl_cfg = TransformerBridgeConfig(
        d_model=cfg.d_model, d_head=cfg.d_model // cfg.n_heads, n_heads=cfg.n_heads,
        n_layers=cfg.n_layers, n_ctx=cfg.n_ctx, d_vocab=vocab_size, d_mlp=cfg.d_mlp,
        act_fn=cfg.act_fn, normalization_type=cfg.normalization_type, seed=cfg.seed,
        default_prepend_bos=False)
    # The bridge would re-load our tokenizer by hub name to add a BOS; ours has none to add, so
    # boot without it and attach it afterwards (to_str_tokens etc. then work in notebooks).
    model = TransformerBridge.boot_native(tl_cfg)
    if tokenizer is not None:
        model.tokenizer = tokenizer
    return to_device(model, device)


def to_device(model, device: str | torch.device | None):
    """Move a model; bridges are asked not to print "Moving model to device" on every move."""
    dev = resolve_device(device)
    try:
        return model.to(dev, print_details=False)
    except TypeError:  # a plain nn.Module (e.g. a peft-wrapped one) takes no print_details
        return model.to(dev)


def load_hf_model(path: str | Path, device: str | torch.device | None = None, dtype=torch.float32, tokenizer=None):
    """Wrap a Hugging Face causal LM saved at a local ``path`` (GPT-2, Llama, Qwen2, ...).

    The tokenizer is read from ``tokenizer.json`` as a generic fast tokenizer when present:
    AutoTokenizer would pick a class from the *model* type and can silently swap the vocabulary
    (a word-level tokenizer saved next to a Qwen2 config loads as an empty Qwen2 BPE).
    """
    import os
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    if not (path / "config.json").exists():
        raise ModelError(f"{path} holds no Hugging Face config.json; pass a directory written by save_pretrained.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if tokenizer is not None:
        tok = tokenizer
    elif (path / "tokenizer.json").exists():
        tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    else:
        tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = TransformerBridge.boot_transformers(str(path), tokenizer=tok, device=str(resolve_device(device)), dtype=dtype)
    return model, tok


def model_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """[batch, pos] -> [batch, pos, vocab]; one place that knows how to call a bridge."""
    out = model(tokens)
    return out if isinstance(out, torch.Tensor) else out.logits


def model_device(model) -> torch.device:
    return next(model.parameters()).device


# ------------------------------------------------------------------ save / load
WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model_config.json"


def save_model(model, cfg: ModelConfig, tokenizer, out: str | Path) -> None:
    """Weights (safetensors), model config and tokenizer into ``out``; each write atomic."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_save(out / WEIGHTS, lambda tmp: save_file(state, tmp))
    tokenizer.save_pretrained(str(out / "tokenizer"))
    atomic_write_json(out / MODEL_CONFIG, {"model": cfg.to_dict(), "vocab_size": len(tokenizer)})


def clone_model(model):
    """A deep copy of ``model`` that owns its hooks: use it instead of ``copy.deepcopy``.

    Why: ``copy.deepcopy`` of a TransformerBridge shares its blocks' capture-hook closures with
    the original (functions are copied by reference), so the copy's forward passes store their
    pre-LayerNorm residual, autograd history included, on the *original's* attention modules;
    the next copy of the original then fails ("Only Tensors created explicitly by the user ...
    support the deepcopy protocol"). So: clear the original's captured tensors, copy, and
    re-install the copy's capture hooks so that they point at the copy."""
    import copy

    for m in model.modules():
        if getattr(m, "_captured_pre_ln_residual", None) is not None:
            m._captured_pre_ln_residual = None
    twin = copy.deepcopy(model)
    for block in twin.modules():
        handles = getattr(block, "_capture_hook_handles", None)
        if not handles or not getattr(block, "_capture_hooks_wired", False):
            continue
        ids = {h.id for h in handles}
        for m in block.modules():
            for hooks in (m._forward_pre_hooks, m._forward_pre_hooks_with_kwargs):
                for k in [k for k in hooks if k in ids]:
                    del hooks[k]
        block._capture_hook_handles = []
        block._capture_hooks_wired = False
        block._maybe_wire_capture_hooks()
    return twin


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 (first 16 hex digits) of a state dict's values, keys in sorted order: what a set of
    weights *is*, independent of the config that asked for it. Probes, cached teachers and
    hypothesis cells are stamped with the fingerprint of the base they were computed from."""
    import hashlib
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(state[k].detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def load_model(path: str | Path, device: str | torch.device | None = None):
    """Inverse of save_model. Returns (model, ModelConfig, tokenizer)."""
    from interference.tokenizer import load_tokenizer

    path = Path(path)
    if not (path / WEIGHTS).exists() or not (path / MODEL_CONFIG).exists():
        raise ModelError(f"no saved model at {path} (expected {WEIGHTS} and {MODEL_CONFIG}); "
                         "pre-train one with `python -m interference.pretrain --out DIR`.")
    meta = json.loads((path / MODEL_CONFIG).read_text())
    cfg = ModelConfig.from_dict(meta["model"])
    tok = load_tokenizer(path / "tokenizer")
    model = build_model(cfg, meta["vocab_size"], tokenizer=tok, device="cpu")
    load_state(model, path / WEIGHTS)
    return to_device(model, device), cfg, tok


def load_state(model, file: str | Path) -> None:
    """Load safetensors weights, refusing files that are corrupt or from another model."""
    try:
        state = load_file(str(file))
    except Exception as e:  # safetensors raises several types for truncated/garbled files
        raise ModelError(f"checkpoint {file} is corrupted or unreadable ({type(e).__name__}); "
                         "delete it and re-run to retrain.") from None
    own = model.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise ModelError(f"checkpoint {file} is from a different model (parameter names or shapes differ); "
                         "point at the checkpoint of this model or retrain.")
    model.load_state_dict(state)


# ------------------------------------------------------------------ parameter groups
GROUPS = ("embed", "attn", "mlp", "norm", "unembed")
# One table for every family we load. First match wins; order matters because HF names such
# as ``post_attention_layernorm`` contain "attention" but are norms. Segments are matched
# whole (between dots) so "attn" never matches inside another word.
_GROUP_RULES: tuple[tuple[str, str], ...] = (
    ("norm", r"(ln\w*|\w*norm\w*)"),                     # ln1 / ln_1 / ln_f / input_layernorm / norm
    ("attn", r"(attn|self_attn|attention)"),
    ("mlp", r"(mlp|feed_forward)"),
    ("embed", r"(tok_embed|pos|embed|embed_tokens|wte|wpe|pos_embed)"),
    ("unembed", r"(head|lm_head|unembed)"),
)
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)(?:\.|$)")


def param_group(name: str) -> tuple[str, int | None]:
    """(group, layer or None) of a parameter name; raises if the table does not cover it."""
    segments = [s for s in name.split(".") if s != "_original_component"]
    for group, pattern in _GROUP_RULES:
        rx = re.compile(pattern + r"$")
        if any(rx.match(s) for s in segments[:-1]):
            m = _LAYER.search(name)
            return group, int(m.group(1)) if m else None
    raise ModelError(f"parameter {name!r} matches no group in the parameter-group table; add a rule to models._GROUP_RULES.")


def parameter_groups(model) -> dict[str, tuple[str, int | None]]:
    """name -> (group, layer) for every trainable parameter of ``model``."""
    return {n: param_group(n) for n, _ in model.named_parameters()}


def n_layers_of(model) -> int:
    return int(model.cfg.n_layers)
