"""Which parameters carry the forgetting: revert-one-group attribution and gradient alignment.

Why two measures: *revert* is causal but after the fact (put one parameter group back to its
base values, re-score the held-out known facts, see how much forgetting goes away); *gradient
alignment* is local but can be taken at any step (does a step on the new facts push a known
fact's loss up? negative cosine = conflict). Agreement between them is the evidence for the
localized-interference hypothesis; disagreement is a finding too.

Units are the parameter groups of ``interference.models.param_group`` (embed, attn, mlp, norm,
unembed), split per layer unless asked otherwise, named ``"attn.2"``, ``"mlp.0"``, ``"embed"``.
The model under study is modified in place only inside ``reverted`` and is always restored.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from interference.batching import answer_loss, pack
from interference.data import Fact
from interference.evaluate import score_facts
from interference.metrics.forgetting import forgetting_rate, forgotten_ids
from interference.metrics.overlap import cosine
from interference.models import model_logits, param_group
from interference.records import FactOutcomes


def unit_name(group: str, layer: int | None) -> str:
    return group if layer is None else f"{group}.{layer}"


def parameter_units(model, by_layer: bool = True) -> dict[str, list[str]]:
    """unit name -> parameter names, in model order; every parameter in exactly one unit."""
    units: dict[str, list[str]] = defaultdict(list)
    for name, _ in model.named_parameters():
        group, layer = param_group(name)
        units[unit_name(group, layer if by_layer else None)].append(name)
    return dict(units)


def update_norms(model, base_model, by_layer: bool = False) -> dict[str, float]:
    """unit -> L2 norm of (fine-tuned - base) weights over that unit, plus ``"total"``.

    Where an update went, next to where its damage is (``revert_attribution``): an anchored
    method (L2-to-init) moves the weights less in total, and may still move some unit more."""
    base, params = dict(base_model.named_parameters()), dict(model.named_parameters())
    sq: dict[str, float] = defaultdict(float)
    with torch.no_grad():
        for unit, names in parameter_units(model, by_layer).items():
            for n in names:
                if n not in base:
                    raise ValueError(f"parameter {n} is not in the base model; compare a model with its own base.")
                sq[unit] += float(((params[n].double() - base[n].double()) ** 2).sum())
    out = {u: v ** 0.5 for u, v in sq.items()}
    out["total"] = sum(sq.values()) ** 0.5
    return out


@contextlib.contextmanager
def reverted(model, base_model, param_names: Sequence[str]) -> Iterator[None]:
    """Temporarily copy the base values of ``param_names`` into ``model``; restored on exit, even
    when the body raises."""
    params = dict(model.named_parameters())
    base = dict(base_model.named_parameters())
    missing = [n for n in param_names if n not in params or n not in base]
    if missing:
        raise ValueError(f"parameter {missing[0]!r} is not in both models; attribution needs the fine-tuned "
                         "model and its own base (same architecture).")
    saved = {n: params[n].detach().clone() for n in param_names}
    try:
        with torch.no_grad():
            for n in param_names:
                params[n].copy_(base[n])
        yield
    finally:
        with torch.no_grad():
            for n, v in saved.items():
                params[n].copy_(v)


@dataclass
class RevertAttribution:
    """Forgetting of known facts after fine-tuning, and how much of it each unit's revert undoes.

    ``share[u]`` = (forgetting - forgetting with u reverted) / forgetting. Shares need not sum to
    1: units interact (reverting attention alone may undo what needs the MLP too), and a revert
    can also make things worse (negative share).
    """

    forgetting: float  # share of base-known facts wrong after fine-tuning
    n_known: int
    forgetting_reverted: dict[str, float] = field(default_factory=dict)
    share: dict[str, float] = field(default_factory=dict)
    recovered: dict[str, list[str]] = field(default_factory=dict)  # forgotten facts each revert fixes

    def to_dict(self) -> dict:
        return {"forgetting": self.forgetting, "n_known": self.n_known,
                "forgetting_reverted": self.forgetting_reverted, "share": self.share,
                "n_recovered": {u: len(v) for u, v in self.recovered.items()}}


def revert_attribution(model, base_model, tokenizer, facts: Sequence[Fact], by_layer: bool = True,
                       units: Sequence[str] | None = None) -> RevertAttribution:
    """Revert each unit of ``model`` to ``base_model`` in turn and re-score ``facts`` (the
    held-out known facts). Cost: one scoring pass per unit (~ 2 x n_layers + 3 passes)."""
    table = parameter_units(model, by_layer)
    if units is not None:
        unknown = [u for u in units if u not in table]
        if unknown:
            raise ValueError(f"unknown parameter unit(s) {unknown}; this model has {sorted(table)}.")
        table = {u: table[u] for u in units}
    base_res = FactOutcomes.from_results(score_facts(base_model, tokenizer, facts))
    now = FactOutcomes.from_results(score_facts(model, tokenizer, facts))
    rate = forgetting_rate(base_res, now)
    out = RevertAttribution(rate, int(base_res.correct.sum()))
    lost_set = set(forgotten_ids(base_res, now))
    for u, names in table.items():
        with reverted(model, base_model, names):
            res = FactOutcomes.from_results(score_facts(model, tokenizer, facts))
        r_rate = forgetting_rate(base_res, res)
        out.forgetting_reverted[u] = r_rate
        out.share[u] = (rate - r_rate) / rate if rate > 0 else float("nan")
        out.recovered[u] = sorted(lost_set - set(forgotten_ids(base_res, res)))
    return out


# ------------------------------------------------------------------ gradient alignment
def _unit_grads(model, units: dict[str, list[str]], loss: torch.Tensor) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    flat = [params[n] for names in units.values() for n in names]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    by_name = {n: g for n, g in zip((n for names in units.values() for n in names), grads)}
    return {u: torch.cat([(by_name[n] if by_name[n] is not None else torch.zeros_like(params[n])).flatten()
                          for n in names]) for u, names in units.items()}


@dataclass
class GradientAlignment:
    """cos[i, j]: cosine between the new-fact loss gradient and known fact i's loss gradient,
    restricted to unit j (plus an ``"all"`` column for the whole model). Negative = a step that
    lowers the new-fact loss raises fact i's loss (to first order). float64, clamped to [-1, 1]
    (``metrics.overlap.cosine``), so a gradient's cosine with itself is 1 on any machine."""

    fact_ids: list[str]
    units: list[str]
    cos: torch.Tensor  # [n_known, n_units]

    def mean_by_unit(self) -> dict[str, float]:
        return {u: float(self.cos[:, j].mean()) for j, u in enumerate(self.units)}

    def conflict_by_unit(self) -> dict[str, float]:
        """Share of known facts whose gradient conflicts with the new-fact gradient."""
        return {u: float((self.cos[:, j] < 0).float().mean()) for j, u in enumerate(self.units)}


def gradient_alignment(model, tokenizer, new_facts: Sequence[Fact], known_facts: Sequence[Fact],
                       by_layer: bool = True, new_batch: int = 256) -> GradientAlignment:
    """Per-unit cosine between d(new-fact loss)/dθ and d(known-fact i loss)/dθ for each known fact.

    Gradients come from ``torch.autograd.grad`` on the parameters (never from ``retain_grad`` on
    bridge hook views, which can be inert), so the model's own ``.grad`` buffers and its
    ``requires_grad`` flags are left exactly as they were; eval mode is used (no dropout) and
    restored. One backward pass per known fact: pass a sample for large sets.
    """
    if not new_facts or not known_facts:
        raise ValueError("gradient_alignment needs at least one new fact and one known fact.")
    units = parameter_units(model, by_layer)
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()
    n_ctx = int(model.cfg.n_ctx)
    try:
        for p in params:
            p.requires_grad_(True)
        g_new: dict[str, torch.Tensor] = {}
        total = 0
        for s in range(0, len(new_facts), new_batch):  # mean loss over new facts, in chunks
            chunk = new_facts[s:s + new_batch]
            batch = pack(tokenizer, [(f.prompt, f.answer) for f in chunk], n_ctx).to(next(iter(params)).device)
            loss = answer_loss(model_logits(model, batch.ids), batch) * len(chunk)
            for u, g in _unit_grads(model, units, loss).items():
                g_new[u] = g_new.get(u, 0) + g
            total += len(chunk)
        g_new = {u: g / total for u, g in g_new.items()}
        names = list(units) + ["all"]
        g_new_all = torch.cat([g_new[u] for u in units])
        cos = torch.empty(len(known_facts), len(names), dtype=torch.float64)
        for i, f in enumerate(known_facts):
            batch = pack(tokenizer, [(f.prompt, f.answer)], n_ctx).to(g_new_all.device)
            g = _unit_grads(model, units, answer_loss(model_logits(model, batch.ids), batch))
            for j, u in enumerate(units):
                cos[i, j] = cosine(g[u], g_new[u], dim=0)
            cos[i, -1] = cosine(torch.cat([g[u] for u in units]), g_new_all, dim=0)
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        model.train(was_training)
    return GradientAlignment([f.fact_id for f in known_facts], names, cos)
