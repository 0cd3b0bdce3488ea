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
    # format generalisation to statement-only facts (calibration runs: QA on statement-only
    # entities rose from 30% at step 500 to 81% at step 3000 (315 s on 2 cores); d256 reached 0.898).
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
        attach_tokenizer(model, tokenizer)
    return to_device(model, device)


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer(text)`` (special tokens on, as ``encode_qa`` calls it) starts with BOS."""
    bos = tokenizer.bos_token_id
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bos is not None and len(with_special) > len(without) and with_special[0] == bos


def attach_tokenizer(model, tokenizer) -> None:
    """Make ``model("Q: ... A:")`` see exactly the tokens of the token path (``tokenizer(text)``,
    as ``encode_qa`` encodes every prompt), and give a bridge booted without one its tokenizer.

    Why: a bridge booted without a tokenizer keeps ``cfg.tokenizer_prepends_bos=True``, so its
    string path "removed" a BOS our tokenizer never added and silently dropped each prompt's first
    token (QA accuracy 0.53 through strings vs 0.83 through tokens). ``tokenizer_prepends_bos``
    is set to what the bridge's own tokenizer does (for a Hugging Face model TransformerLens keeps
    a copy that always adds BOS) and ``default_prepend_bos`` to what ours does, so TransformerLens
    strips or keeps a BOS exactly as the token path has it (GPT-2: none; Llama: its own)."""
    if getattr(model, "tokenizer", None) is None:
        model.tokenizer = tokenizer
    model.cfg.tokenizer_prepends_bos = tokenizer_adds_bos(model.tokenizer)
    model.cfg.default_prepend_bos = tokenizer_adds_bos(tokenizer)


def to_device(model, device: str | torch.device | None):
    """Move a model; bridges are asked not to print "Moving model to device" on every move."""
    dev = resolve_device(device)
    try:
        return model.to(dev, print_details=False)
    except TypeError:  # a plain nn.Module (e.g. a peft-wrapped one) takes no print_details
        return model.to(dev)


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


def _hf_config(path: Path) -> dict:
    """config.json of a local HF model directory, or one sentence saying why it is not one."""
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a Hugging Face model directory (no config.json); pass a directory "
                         "written by save_pretrained.")
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{path / 'config.json'} is not valid JSON; restore it from the model's original files.") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        raise ModelError(f"{path / 'config.json'} names no model_type; restore it from the model's original files.")
    return cfg


def load_hf_tokenizer(path: str | Path):
    """The tokenizer saved in a model directory; refuses a directory without one.

    ``tokenizer.json`` is read as a generic fast tokenizer: AutoTokenizer picks a class from the
    *model* type and can silently swap the vocabulary (a word-level tokenizer saved next to a
    Qwen2 config loads as an empty Qwen2 BPE), and with no tokenizer files at all it returned a
    one-token tokenizer that encodes every prompt to nothing.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = Path(path)
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise ModelError(f"{path} holds no tokenizer ({', '.join(_TOKENIZER_FILES)}); save the model's tokenizer "
                         "there with tokenizer.save_pretrained.")
    try:
        if (path / "tokenizer.json").is_file():
            tok = PreTrainedTokenizerFast.from_pretrained(str(path))
        else:
            tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        ids = tok("The capital of France is", add_special_tokens=False)["input_ids"]
    except Exception as e:  # tokenizers raises many types for a garbled file
        raise ModelError(f"the tokenizer files in {path} are unreadable ({type(e).__name__}); "
                         "restore them from the model's original files.") from None
    if len(tok) < 2 or not ids:
        raise ModelError(f"the tokenizer in {path} has {len(tok)} token(s) and encodes text to nothing; "
                         "restore the model's real tokenizer files.")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.convert_ids_to_tokens(0)
    return tok


def load_hf_model(path: str | Path, device: str | torch.device | None = None, dtype=torch.float32, tokenizer=None,
                  trust_remote_code: bool = False):
    """Wrap a Hugging Face causal LM saved at a local ``path`` (a family of ``FAMILIES``) in a
    TransformerBridge, so hook names are the same as on our own models. Returns (model, tokenizer).

    ``trust_remote_code`` stays off unless the caller asks: a model directory is data, and with
    it on, a ``modeling_*.py`` inside it would run. Every unusable input is one ``ModelError``.
    """
    import os
    from transformer_lens.model_bridge import TransformerBridge

    path = Path(path)
    hf_cfg = _hf_config(path)
    family_of(model_type=hf_cfg["model_type"], architecture=(hf_cfg.get("architectures") or [None])[0])
    tok = tokenizer if tokenizer is not None else load_hf_tokenizer(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory only: never reach for the hub
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # "Loading weights" bars would bury our own one-line messages
    dev = resolve_device(device)
    try:
        hf = _load_checked_hf(path, dtype, trust_remote_code).to(dev)
        model = TransformerBridge.boot_transformers(str(path), tokenizer=tok, device=str(dev), dtype=dtype,
                                                    trust_remote_code=trust_remote_code, hf_model=hf)
    except ModelError:
        raise
    except Exception as e:  # safetensors / transformers raise many types for bad weight files
        raise ModelError(f"the weights in {path} could not be loaded ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else 'no detail'}); restore the model's "
                         "original files.") from None
    if int(model.cfg.d_vocab) < len(tok):
        raise ModelError(f"the tokenizer in {path} has {len(tok)} tokens but the model only {model.cfg.d_vocab}; "
                         "use the tokenizer the model was trained with.")
    attach_tokenizer(model, tok)  # the string path then gives the token path's tokens (GPT-2: no BOS added)
    return model, tok


def _load_checked_hf(path: Path, dtype, trust_remote_code: bool):
    """The Hugging Face model at ``path``, refused when its weight files do not cover its config.

    transformers fills a tensor the files lack (or hold in another shape) with random values and
    reports it in its loading info, which the bridge never shows: a directory whose config names
    another family than its weights, or whose files lost some tensors, would train and report as
    that model. So the model is loaded here with ``output_loading_info=True`` and handed to the
    bridge, which then loads nothing itself."""
    from transformers import AutoModelForCausalLM
    hf, info = AutoModelForCausalLM.from_pretrained(str(path), output_loading_info=True, dtype=dtype,
                                                    trust_remote_code=trust_remote_code)
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in (info.get("mismatched_keys") or []))
    if missing or mismatched:
        bad = missing or mismatched
        what = "lack" if missing else "hold in another shape"
        raise ModelError(f"the weight files in {path} {what} {len(bad)} tensor(s) its config.json asks for "
                         f"({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}), which would be randomly "
                         "initialised; restore the model's original weight files (and a config.json of their "
                         "family).")
    return hf


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


def _neox_fused_qkv(params: dict[str, torch.Tensor], n_heads: int) -> dict[str, torch.Tensor]:
    """GPT-NeoX's ``query_key_value`` rebuilt from the bridge's split q/k/v.

    The bridge runs separate q/k/v copies of NeoX's fused projection (GPT-2's split q/k/v are
    views into ``c_attn``, so they need nothing), and training moves only the copies. The fused
    layout interleaves heads: rows are [head, (q|k|v), head_dim].
    """
    out = {}
    for name in params:
        m = re.match(r"^(gpt_neox\.layers\.\d+\.attention\.)q\.(weight|bias)$", name)
        if not m:
            continue
        pre, kind = m.groups()
        q, k, v = (params[f"{pre}{x}.{kind}"] for x in "qkv")
        d_out = q.shape[0]
        parts = [t.reshape(n_heads, d_out // n_heads, *t.shape[1:]) for t in (q, k, v)]
        out[f"{pre}query_key_value.{kind}"] = torch.stack(parts, 1).reshape(3 * d_out, *q.shape[1:])
    return out


def _gpt2_fused_qkv(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT-2's ``c_attn`` rebuilt from the bridge's q/k/v. On a freshly loaded bridge they are
    views into ``c_attn``, but a deep copy (the LoRA merge, any cloned model) makes them separate
    tensors, and then only q/k/v carry the training. ``c_attn`` is a Conv1D ([d_in, q|k|v]); the
    bridge's q/k/v are Linear-shaped ([d_out, d_in]) transposed views of its three blocks."""
    out = {}
    for name in params:
        m = re.match(r"^(transformer\.h\.\d+\.attn\.)q\.(weight|bias)$", name)
        if m:
            pre, kind = m.groups()
            parts = [params[f"{pre}{x}.{kind}"] for x in "qkv"]
            out[f"{pre}c_attn.{kind}"] = torch.cat([t.T if kind == "weight" else t for t in parts], dim=-1)
    return out


def save_hf_model(model, tokenizer, out: str | Path) -> None:
    """A (fine-tuned) Hugging Face model behind a bridge, as ``save_pretrained`` writes it, so
    ``load_hf_model(out)`` and any HF tool read it back.

    The bridge wraps the HF model's modules in place (its state dict then holds each tensor
    under several names), so the weights are copied by their plain HF names into a fresh model
    of the same config and that one is saved; GPT-2's and GPT-NeoX's fused qkv are rebuilt from
    the q/k/v the bridge actually runs.
    """
    import shutil

    hf = model.original_model
    with torch.device("meta"):
        fresh = type(hf)(hf.config)
    wanted = set(fresh.state_dict())
    plain = {}
    for k, v in hf.state_dict().items():
        plain.setdefault(_normalise(k), v.detach())
    if hf.config.model_type == "gpt_neox":
        plain.update(_neox_fused_qkv(plain, int(hf.config.num_attention_heads)))
    elif hf.config.model_type == "gpt2":
        plain.update(_gpt2_fused_qkv(plain))
    state = {n: v for n, v in plain.items() if n in wanted}
    fresh.load_state_dict(state, strict=False, assign=True)
    fresh.tie_weights()
    left = [n for n, p in fresh.named_parameters() if p.is_meta]
    if left:
        raise ModelError(f"could not find the trained weights {left[:3]} to save; the family table needs an export rule.")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


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
_LLAMA_LIKE = {  # Llama, Qwen2 and Mistral share one layout of parameter names
    "embed": r"^model\.embed_tokens\.",
    "attn": r"^model\.layers\.\d+\.self_attn\.",
    "mlp": r"^model\.layers\.\d+\.mlp\.",
    "norm": r"^model\.(layers\.\d+\.(input_layernorm|post_attention_layernorm)|norm)\.",
    "unembed": r"^lm_head\.",
}
_LLAMA_LINEARS = {"attn": "q_proj|k_proj|v_proj|o_proj", "mlp": "gate_proj|up_proj|down_proj"}


@dataclass(frozen=True)
class Family:
    """One model family: the HF ``model_type``/architectures it covers and, per group, the one
    regular expression its parameter names match (after TransformerBridge's
    ``_original_component`` wrappers are dropped). Every parameter must match exactly one rule,
    so a new family is one row here and a test, never an edit of matching logic."""
    name: str
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    rules: dict
    # the linear layers a forward pass uses, per group (LoRA's targets); on GPT-2 and GPT-NeoX the
    # bridge runs split q/k/v projections and leaves the fused qkv beside them unused
    linears: dict = dataclasses.field(default_factory=dict)


FAMILIES: tuple[Family, ...] = (
    Family("native", ("native",), ("TransformerLensNative",), {  # our from-scratch model
        "embed": r"^(tok_embed|pos)\.", "attn": r"^layers\.\d+\.attn\.", "mlp": r"^layers\.\d+\.mlp\.",
        "norm": r"^(layers\.\d+\.ln[12]|ln_out)\.", "unembed": r"^head\."},
        {"attn": "q|k|v|o", "mlp": "fc_in|fc_out"}),
    Family("gpt2", ("gpt2",), ("GPT2LMHeadModel",), {  # unembedding tied to wte: no lm_head of its own
        "embed": r"^transformer\.(wte|wpe)\.", "attn": r"^transformer\.h\.\d+\.attn\.",
        "mlp": r"^transformer\.h\.\d+\.mlp\.", "norm": r"^transformer\.(h\.\d+\.ln_[12]|ln_f)\.",
        "unembed": r"^lm_head\."},
        {"attn": "q|k|v|o", "mlp": "c_fc|c_proj"}),
    Family("llama", ("llama",), ("LlamaForCausalLM",), _LLAMA_LIKE, _LLAMA_LINEARS),
    Family("qwen2", ("qwen2",), ("Qwen2ForCausalLM",), _LLAMA_LIKE, _LLAMA_LINEARS),
    Family("mistral", ("mistral",), ("MistralForCausalLM",), _LLAMA_LIKE, _LLAMA_LINEARS),
    Family("gpt_neox", ("gpt_neox",), ("GPTNeoXForCausalLM",), {
        "embed": r"^gpt_neox\.embed_in\.", "attn": r"^gpt_neox\.layers\.\d+\.attention\.",
        "mlp": r"^gpt_neox\.layers\.\d+\.mlp\.",
        "norm": r"^gpt_neox\.(layers\.\d+\.(input_layernorm|post_attention_layernorm)|final_layer_norm)\.",
        "unembed": r"^(lm_head|embed_out)\."},
        {"attn": "q|k|v|o", "mlp": "dense_h_to_4h|dense_4h_to_h"}),
)
_COMPILED = {f.name: {g: re.compile(rx) for g, rx in f.rules.items()} for f in FAMILIES}
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)(?:\.|$)")


def supported_families() -> str:
    return ", ".join(f.name for f in FAMILIES if f.name != "native")


def family_of(model_type: str | None = None, architecture: str | None = None) -> Family:
    """The table row for an HF ``model_type`` or architecture; one sentence if there is none."""
    for f in FAMILIES:
        if model_type in f.model_types or architecture in f.architectures:
            return f
    raise ModelError(f"model family {model_type or architecture!r} is not in the parameter-group table; "
                     f"supported families: {supported_families()}.")


def model_family(model) -> Family:
    return family_of(architecture=getattr(model.cfg, "architecture", None))


def _normalise(name: str) -> str:
    return ".".join(s for s in name.split(".") if s != "_original_component")


def _match(name: str, families) -> tuple[str, int | None]:
    norm = _normalise(name)
    groups = {g for f in families for g, rx in _COMPILED[f.name].items() if rx.search(norm)}
    if len(groups) != 1:
        what = "matches no group" if not groups else f"matches several groups {sorted(groups)}"
        raise ModelError(f"parameter {name!r} {what} in the parameter-group table "
                         f"({', '.join(f.name for f in families)}); add or fix a rule in models.FAMILIES.")
    m = _LAYER.search(norm)
    return groups.pop(), int(m.group(1)) if m else None


def param_group(name: str) -> tuple[str, int | None]:
    """(group, layer or None) of a parameter name of any family in the table."""
    return _match(name, FAMILIES)


def parameter_groups(model) -> dict[str, tuple[str, int | None]]:
    """name -> (group, layer) for every parameter of ``model``, by its own family's rules."""
    fam = model_family(model)
    return {n: _match(n, (fam,)) for n, _ in model.named_parameters()}


def n_layers_of(model) -> int:
    return int(model.cfg.n_layers)
