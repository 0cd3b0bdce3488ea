"""Activation probes: hidden states of tracked facts at named hook points and token positions.

Why this shape: overlap and drift are questions about a handful of vectors per fact (the
subject's last token, the token after it, the answer position) at a few layers, asked many
times along training. So we cache narrowly (TransformerLens names verbatim, a names filter,
chosen positions, no grad), store float16 snapshots per step, and stamp every file with a
fingerprint of the model they came from, so activations of one base model are never compared
with another's.

    acts = capture(model, tok, facts, ["blocks.1.hook_resid_post"], "subject_last")  # {hook: [n, d]}
    finetune(cfg, out, callbacks=[ProbeCallback(("stability", "plasticity"), every=50)])
    store = load_probes(out, base_model=base)      # refuses probes of another model
    store.series("blocks.1.hook_resid_post", "subject_last")   # [n_steps, n_facts, d]
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from interference.hooks import resid_post, resid_posts
from interference.data import Fact
from interference.io import atomic_save, atomic_write_json
from interference.models import model_device, weights_fingerprint

POSITIONS = ("subject_last", "relation", "last")
PROBE_DIR = "probes"
INDEX = "index.json"
DEFAULT_EVERY = 100  # steps between snapshots: 7 over a default 520-step SFT run; every 50 cost ~16% extra time


class ProbeError(ValueError):
    """A probe request or probe file we cannot honour."""


# ------------------------------------------------------------------ positions
def _subject_span(fact: Fact) -> tuple[int, int]:
    m = re.search(r"(?<!\S)" + re.escape(fact.subject) + r"(?!\S)", fact.prompt)
    start = m.start() if m else fact.prompt.find(fact.subject)
    if not fact.subject or start < 0:
        raise ProbeError(f"fact {fact.fact_id}: subject {fact.subject!r} does not occur in its prompt "
                         f"{fact.prompt!r}, so 'subject_last'/'relation' positions do not exist there.")
    return start, start + len(fact.subject)


def subject_tokens(tokenizer, fact: Fact) -> tuple[list[int], list[int]]:
    """(prompt ids, index of every token of the subject, in order). Character offsets locate the
    subject, so BPE tokenizers that merge a leading space into the name are handled like
    word-level ones."""
    enc = tokenizer(fact.prompt, add_special_tokens=True, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    s, e = _subject_span(fact)
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < e and b > s]
    if not inside:
        raise ProbeError(f"fact {fact.fact_id}: no token of subject {fact.subject!r} in the tokenized prompt.")
    return ids, inside


def token_positions(tokenizer, fact: Fact, positions: Sequence[str]) -> tuple[list[int], list[int]]:
    """(prompt ids, index of each requested position); the subject's tokens as ``subject_tokens``
    finds them."""
    if all(p == "last" for p in positions):
        ids, inside = tokenizer(fact.prompt, add_special_tokens=True)["input_ids"], []
    else:
        ids, inside = subject_tokens(tokenizer, fact)
    out = []
    for pos in positions:
        if pos == "last":
            out.append(len(ids) - 1)
            continue
        idx = inside[-1] + (pos == "relation")
        if idx >= len(ids):
            raise ProbeError(f"fact {fact.fact_id}: position {pos!r} does not exist in prompt {fact.prompt!r} "
                             "(the subject is its last token).")
        out.append(idx)
    return ids, out


def _check_positions(positions: Sequence[str]) -> None:
    bad = [p for p in positions if p not in POSITIONS]
    if bad or not positions:
        raise ProbeError(f"unknown token position(s) {bad or '(none given)'}; choose from {list(POSITIONS)}.")


# ------------------------------------------------------------------ hooks
def check_hooks(model, hooks: Sequence[str]) -> None:
    """Refuse hook names the model does not have, naming the closest ones it does."""
    if not hooks:
        raise ProbeError("no hook points requested; pass names such as 'blocks.0.hook_resid_post'.")
    known = list(model.hook_dict)
    for h in hooks:
        if h not in model.hook_dict:
            close = difflib.get_close_matches(h, known, n=4, cutoff=0.6)
            raise ProbeError(f"model has no hook point {h!r}; close matches: {close or 'none'} "
                             f"(see model.hook_dict for all {len(known)} names).")


# ------------------------------------------------------------------ capture
@dataclass
class CapturePlan:
    """Tokenized prompts grouped into equal-length batches, with the row each came from and the
    token index of every requested position. Built once per fact list: along training only the
    model changes, so a callback re-uses its plan (tokenizing is ~25% of a capture otherwise)."""

    n_facts: int
    positions: list[str]
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (rows [b], ids [b, L], pos [b, P])


def plan_capture(tokenizer, facts: Sequence[Fact], positions: Sequence[str], batch_size: int = 512) -> CapturePlan:
    _check_positions(list(positions))
    buckets: dict[int, list[tuple[int, list[int], list[int]]]] = defaultdict(list)
    for i, f in enumerate(facts):
        ids, idx = token_positions(tokenizer, f, positions)
        buckets[len(ids)].append((i, ids, idx))
    batches = []
    for items in buckets.values():
        for s in range(0, len(items), batch_size):
            chunk = items[s:s + batch_size]
            batches.append((torch.tensor([i for i, _, _ in chunk]), torch.tensor([t for _, t, _ in chunk]),
                            torch.tensor([p for _, _, p in chunk])))
    return CapturePlan(len(facts), list(positions), batches)


@torch.no_grad()
def run_plan(model, plan: CapturePlan, hooks: Sequence[str]) -> dict[str, torch.Tensor]:
    """{hook: [n_facts, n_positions, d]} for a prepared plan (see ``capture``)."""
    hooks = list(dict.fromkeys(hooks))
    check_hooks(model, hooks)
    dev = model_device(model)
    out: dict[str, torch.Tensor] = {}
    was_training = model.training
    model.eval()
    try:
        for rows, ids, pos in plan.batches:
            ids, pos = ids.to(dev), pos.to(dev)
            _, cache = model.run_with_cache(ids, names_filter=list(hooks), return_cache_object=False)
            for h in hooks:
                act = cache.get(h)
                if act is None:
                    raise ProbeError(f"hook point {h!r} did not fire; it may be gated off on this model "
                                     "(enable it with the matching model.set_use_*(True)) or outside the forward pass.")
                if act.dim() < 3 or tuple(act.shape[:2]) != tuple(ids.shape):
                    raise ProbeError(f"hook point {h!r} gives shape {tuple(act.shape)}, not [batch, pos, ...]; "
                                     "probe a per-token activation such as a residual stream or a block output.")
                a = act.reshape(ids.shape[0], ids.shape[1], -1)
                sel = a[torch.arange(ids.shape[0], device=dev)[:, None], pos].float().cpu()  # [b, P, d]
                if h not in out:
                    out[h] = torch.empty(plan.n_facts, len(plan.positions), sel.shape[-1])
                out[h][rows] = sel
    finally:
        model.train(was_training)
    return {h: out.get(h, torch.empty(0, len(plan.positions), 0)) for h in hooks}


def capture(model, tokenizer, facts: Sequence[Fact], hooks: Sequence[str],
            positions: str | Sequence[str] = "subject_last", batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Activations of ``facts`` at ``hooks`` and token ``positions``, in the order of ``facts``.

    A single position (a string) gives {hook: [n_facts, d]}; a list gives {hook: [n_facts,
    n_positions, d]} (like indexing with a scalar vs a list). Multi-dimensional activations
    (per-head ``attn.hook_z``) are flattened to d. Prompts are batched by equal token length, so
    there is no padding and the activations are exactly those of a single-prompt forward pass.
    The model runs in eval mode (restored after) under no_grad; ``run_with_cache`` removes its
    hooks even if the forward raises.
    """
    single = isinstance(positions, str)
    check_hooks(model, list(hooks))
    acts = run_plan(model, plan_capture(tokenizer, facts, [positions] if single else list(positions), batch_size), hooks)
    return {h: v[:, 0] if single else v for h, v in acts.items()}


def resid_hooks(model) -> list[str]:
    """The residual stream after every block: the default thing to probe."""
    return resid_posts(model.cfg.n_layers)


# ------------------------------------------------------------------ fingerprint
def state_fingerprint(model) -> dict[str, str]:
    """{"arch": hash of parameter names and shapes, "weights": hash of their values}. Probes are
    stamped with the *base* model's fingerprint: the fine-tuned weights move, the base does not."""
    state = model.state_dict()
    arch = hashlib.sha256(json.dumps({k: list(v.shape) for k, v in state.items()}, sort_keys=True).encode())
    return {"arch": arch.hexdigest()[:16], "weights": weights_fingerprint(state)}


def _check_fingerprint(found: dict, expected: dict, where: str) -> None:
    if found.get("arch") != expected.get("arch"):
        raise ProbeError(f"{where} holds activations of a different model architecture (fingerprint "
                         f"{found.get('arch')} vs {expected.get('arch')}); use the probes of this model's run.")
    if found.get("weights") != expected.get("weights"):
        raise ProbeError(f"{where} holds activations from a different base model (weights fingerprint "
                         f"{found.get('weights')} vs {expected.get('weights')}); use the probes of this model's run.")


# ------------------------------------------------------------------ storage
def _key(hook: str, position: str) -> str:
    return f"{hook}|{position}"


def _step_file(step: int) -> str:
    return f"step_{step:07d}.safetensors"


def write_snapshot(directory: Path, step: int, acts: dict[str, torch.Tensor], positions: Sequence[str],
                   fingerprint: dict) -> Path:
    """One float16 safetensors file per step; the fingerprint rides in its metadata."""
    tensors = {_key(h, p): v[:, j].to(torch.float16).contiguous() for h, v in acts.items()
               for j, p in enumerate(positions)}
    path = directory / _step_file(step)
    meta = {"step": str(step), **{f"fingerprint_{k}": v for k, v in fingerprint.items()}}
    atomic_save(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


@dataclass
class ProbeStore:
    """Read side of a probe directory: index + per-step files, checked against one fingerprint."""

    directory: Path
    index: dict

    @property
    def steps(self) -> list[int]:
        return list(self.index["steps"])

    @property
    def fact_ids(self) -> list[str]:
        return list(self.index["fact_ids"])

    @property
    def hooks(self) -> list[str]:
        return list(self.index["hooks"])

    @property
    def positions(self) -> list[str]:
        return list(self.index["positions"])

    def get(self, step: int, hook: str, position: str) -> torch.Tensor:
        """[n_facts, d] float32 at one step."""
        if step not in self.index["steps"]:
            raise ProbeError(f"no probe snapshot at step {step}; stored steps are {self.steps}.")
        if hook not in self.hooks or position not in self.positions:
            raise ProbeError(f"probes hold hooks {self.hooks} at positions {self.positions}, not {hook!r} at {position!r}.")
        path = self.directory / _step_file(step)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            _check_fingerprint({k[12:]: v for k, v in meta.items() if k.startswith("fingerprint_")},
                               self.index["fingerprint"], f"probe file {path}")
            return f.get_tensor(_key(hook, position)).float()

    def series(self, hook: str, position: str, steps: Sequence[int] | None = None) -> torch.Tensor:
        """[n_steps, n_facts, d] float32 over ``steps`` (default: all stored)."""
        return torch.stack([self.get(s, hook, position) for s in (steps or self.steps)])

    def rows(self, fact_ids: Sequence[str]) -> torch.Tensor:
        """Row indices of ``fact_ids`` in the stored tensors."""
        where = {f: i for i, f in enumerate(self.index["fact_ids"])}
        missing = [f for f in fact_ids if f not in where]
        if missing:
            raise ProbeError(f"{len(missing)} fact(s) were not probed (e.g. {missing[0]}); probe them in the run.")
        return torch.tensor([where[f] for f in fact_ids], dtype=torch.long)


def load_probes(run_dir: str | Path, base_model=None) -> ProbeStore:
    """Open the probes of a run; with ``base_model``, refuse probes taken from another model."""
    d = Path(run_dir)
    d = d if (d / INDEX).exists() else d / PROBE_DIR
    if not (d / INDEX).exists():
        raise ProbeError(f"no probes at {run_dir}; run fine-tuning with a ProbeCallback first.")
    store = ProbeStore(d, json.loads((d / INDEX).read_text()))
    if base_model is not None:
        _check_fingerprint(store.index["fingerprint"], state_fingerprint(base_model), f"probe directory {d}")
    return store


# ------------------------------------------------------------------ training callback
def _resolve_facts(facts, data) -> tuple[list[Fact], dict[str, str]]:
    """Facts given directly, or by SFTData set names: "train" or an eval set ("stability", ...)."""
    if facts and isinstance(next(iter(facts)), Fact):
        return list(facts), {f.fact_id: "given" for f in facts}
    out: dict[str, Fact] = {}
    origin: dict[str, str] = {}
    for name in facts:
        pool = data.train if name == "train" else data.eval_sets.get(name)
        if pool is None:
            raise ProbeError(f"unknown fact set {name!r}; choose 'train' or one of {sorted(data.eval_sets)}.")
        for f in pool:
            if f.fact_id not in out:
                out[f.fact_id] = f
                origin[f.fact_id] = name
    return list(out.values()), origin


class ProbeCallback:
    """Snapshots activations of tracked facts every ``every`` steps during fine-tuning.

    It captures at the start (step 0: the base model), at evaluation steps at least ``every``
    steps after the previous snapshot, and at the end. Files go to ``<run>/probes/``; a resumed run
    appends to them, and a directory stamped with another base model is refused.
    """

    def __init__(self, facts: Sequence[Fact] | Sequence[str] = ("stability", "plasticity"),
                 hooks: Sequence[str] | None = None, positions: Sequence[str] = ("subject_last", "last"),
                 every: int = DEFAULT_EVERY, batch_size: int = 512):
        if every < 1:
            raise ProbeError(f"every={every} must be a positive number of steps.")
        _check_positions(list(positions))
        self.facts_spec, self.hooks, self.positions = facts, hooks, list(positions)
        self.every, self.batch_size = every, batch_size
        self.facts: list[Fact] = []
        self.last: int | None = None
        self.seconds = 0.0  # time spent capturing, for the benchmark

    def on_start(self, ctx) -> None:
        self.facts, origin = _resolve_facts(self.facts_spec, ctx.data)
        self.plan = plan_capture(ctx.tokenizer, self.facts, self.positions, self.batch_size)
        self.hooks = list(self.hooks or resid_hooks(ctx.model))
        check_hooks(ctx.model, self.hooks)
        self.dir = Path(ctx.out) / PROBE_DIR
        base = getattr(ctx, "base_model", None)
        self.fingerprint = state_fingerprint(ctx.model if base is None else base)
        index = {"fingerprint": self.fingerprint, "fact_ids": [f.fact_id for f in self.facts],
                 "fact_sets": origin, "hooks": self.hooks, "positions": self.positions, "every": self.every,
                 "steps": []}
        if (self.dir / INDEX).exists():
            old = json.loads((self.dir / INDEX).read_text())
            _check_fingerprint(old.get("fingerprint", {}), self.fingerprint, f"probe directory {self.dir}")
            same = {k: old.get(k) for k in ("fact_ids", "hooks", "positions")} == \
                   {k: index[k] for k in ("fact_ids", "hooks", "positions")}
            if not same:
                raise ProbeError(f"probe directory {self.dir} tracks other facts, hooks or positions; "
                                 "use another run directory or delete it.")
            index["steps"] = [s for s in old["steps"] if s <= int(ctx.step)]
            self.last = max(index["steps"], default=None)
        self.index = index
        if self.last is None or self.last < int(ctx.step):
            self._snapshot(ctx, int(ctx.step))

    def on_eval(self, ctx, step: int) -> None:
        if self.last is None or step - self.last >= self.every:
            self._snapshot(ctx, step)

    def on_end(self, ctx) -> None:
        if self.last != int(ctx.step):
            self._snapshot(ctx, int(ctx.step))

    def _snapshot(self, ctx, step: int) -> None:
        t0 = time.perf_counter()
        acts = run_plan(ctx.model, self.plan, self.hooks)
        write_snapshot(self.dir, step, acts, self.positions, self.fingerprint)
        if step not in self.index["steps"]:
            self.index["steps"] = sorted(self.index["steps"] + [step])
        atomic_write_json(self.dir / INDEX, self.index)
        self.last = step
        self.seconds += time.perf_counter() - t0


def subject_states(model, tok, facts: Sequence[Fact], layers: Sequence[int]) -> torch.Tensor:
    """[L, n, d] residual stream after each of ``layers`` at the subject's last token."""
    hooks = [resid_post(i) for i in layers]
    acts = capture(model, tok, facts, hooks, "subject_last")
    return torch.stack([acts[h] for h in hooks])
