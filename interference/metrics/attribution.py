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

import numpy as np
import torch

from interference.data import Fact
from interference.evaluate import score_facts
from interference.metrics.forgetting import forgetting_rate, forgotten_ids
from interference.metrics.gradients import alignment
from interference.models import param_group
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
@dataclass
class GradientAlignment:
    """cos[i, j]: cosine between the new-fact loss gradient and known fact i's loss gradient,
    restricted to unit j (plus an ``"all"`` column over every unit). Negative = a step that lowers
    the new-fact loss raises fact i's loss (to first order). float64, clamped to [-1, 1]."""

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
    """Per-unit cosine between d(new-fact loss)/dθ and d(known-fact i loss)/dθ for each known fact
    (each fact's answer loss averaged over its answer tokens; the new-fact loss their sum).

    A view of the one alignment (``metrics.gradients.alignment``): one batched forward+backward
    pass per set, no gradient ever stored on the model, so its ``.grad`` buffers, ``requires_grad``
    flags and mode are left as they were. Units are the linear and embedding weights of
    ``parameter_units`` (per layer, or per group with ``by_layer=False``); LayerNorm gains have no
    column (``metrics.gradients`` says why). ``"all"`` is the cosine over every unit together.
    """
    if not new_facts or not known_facts:
        raise ValueError("gradient_alignment needs at least one new fact and one known fact.")
    al = alignment(model, tokenizer, known_facts, new_facts, batch_size=new_batch)
    units = al.units if by_layer else list(dict.fromkeys(u.partition(".")[0] for u in al.units))
    col = [units.index(u if by_layer else u.partition(".")[0]) for u in al.units]
    ip, sq, g_sq = (np.zeros((len(known_facts), len(units))), np.zeros((len(known_facts), len(units))),
                    np.zeros(len(units)))
    for j, c in enumerate(col):  # a group's inner products and squared norms are sums over its units
        ip[:, c] += al.ip[:, j]
        sq[:, c] += al.sq[:, j]
        g_sq[c] += al.g_sq[j]
    ip = np.concatenate([ip, ip.sum(1, keepdims=True)], 1)
    sq = np.concatenate([sq, sq.sum(1, keepdims=True)], 1)
    g_sq = np.append(g_sq, g_sq.sum())
    cos = torch.from_numpy(ip / np.sqrt(np.maximum(sq * g_sq, 1e-300))).clamp(-1.0, 1.0)
    return GradientAlignment([f.fact_id for f in known_facts], units + ["all"], cos)
