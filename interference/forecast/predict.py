"""From a base model and an SFT set to a table of per-fact features, per method.

``compute_features`` runs every feature of ``forecast.features`` for the watched facts (held-out
known facts) against the SFT set, and the gradient alignment once per method:

- ``sft``: every unit trains;
- ``freeze``: only the units the freeze spec trains (``methods.freeze.select_parameters``);
- ``self_distill``: the SFT facts' loss includes the KL term to the method's teacher (the format
  teacher, base + one epoch of SFT on the Known facts, built and cached as the method builds it).

Only the ``gradient_alignment`` group differs between methods; the others are shared (the
``lookahead`` group, ``forecast.lookahead``, steps along the plain SFT loss for every method).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from interference.data import Fact
import interference.forecast.features as F
from interference.metrics.gradients import alignment
from interference.tokenizer import encode_qa

GROUP_PREFIXES = {
    "fragility": ("neg_gold_logprob", "neg_margin", "entropy", "slick_miss", "log_neg_gold_logprob", "log_entropy"),
    "competition": ("pull", "runner_up_taught", "neg_gold_taught", "n_new_rel", "log_pull", "log_runner_up_taught"),
    "pieces": ("pieces_",),
    "overlap": ("overlap_",),
    "gradient_alignment": ("rise_", "conflict_", "sens_", "pair_"),
    "lookahead": ("la_",),
}


def group_of(name: str) -> str:
    for g, prefixes in GROUP_PREFIXES.items():
        if any(name == p or (p.endswith("_") and name.startswith(p)) for p in prefixes):
            return g
    raise KeyError(f"feature {name!r} belongs to no group")


@dataclass
class FeatureTable:
    """One row per watched fact: named feature columns, and the new facts driving its risk."""
    fact_ids: list[str]
    columns: dict[str, np.ndarray]
    drivers: list[list[dict]] = field(default_factory=list)  # per fact: [{fact_id, subject, relation, value, conflict}]
    method: str = "sft"

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise KeyError(f"features {missing[:3]} are not in this table (another model depth?); "
                           "refit the combiner on features of this kind of model.")
        return np.stack([self.columns[n] for n in names], 1) if names else np.zeros((len(self.fact_ids), 0))

    def to_dict(self) -> dict:
        return {"method": self.method, "fact_ids": self.fact_ids,
                "columns": {k: [float(x) for x in v] for k, v in self.columns.items()}, "drivers": self.drivers}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureTable":
        return cls(d["fact_ids"], {k: np.asarray(v, float) for k, v in d["columns"].items()}, d.get("drivers", []),
                   d.get("method", "sft"))


def _first_token(tok, f: Fact) -> int:
    return encode_qa(tok, f.prompt, f.answer)[1][0]


def _fill_nan(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """nan (e.g. overlap where the relation has no new fact) -> the column's minimum: no
    competitor there means the least risk that feature can express."""
    out = {}
    for k, v in cols.items():
        v = np.asarray(v, float)
        if np.isnan(v).any():
            fin = v[np.isfinite(v)]
            v = np.where(np.isnan(v), fin.min() if fin.size else 0.0, v)
        out[k] = v
    return out


def method_alignment_args(model, method: str, options: dict | None = None, teacher=None) -> dict:
    """Keyword arguments of ``gradients.alignment`` that make it the given method's."""
    from interference.metrics.gradients import linear_modules, unit_of_module
    options = options or {}
    if method == "sft":
        return {}
    if method == "freeze":
        from interference.methods.freeze import select_parameters
        from interference.models import param_group
        chosen = select_parameters(model, options.get("groups", "attn"))
        units = set()
        for name, _ in chosen:
            g, layer = param_group(name)
            if g != "norm":
                units.add(g if layer is None else f"{g}.{layer}")
        units &= {unit_of_module(n) for n in linear_modules(model)}
        return {"units": sorted(units)}
    if method == "self_distill":
        if teacher is None:
            raise ValueError("the self-distillation forecast needs the method's teacher model.")
        return {"teacher": teacher, "kl_weight": float(options.get("kl_weight", 1.0)),
                "temperature": float(options.get("temperature", 0.5))}
    raise ValueError(f"method {method!r} has no forecast; use sft, self_distill or freeze.")


def shared_features(model, tok, watch: Sequence[Fact], train: Sequence[Fact], new_ids: set[str],
                    slick: dict | None = None, logprobs: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The method-independent groups: fragility, competition, pieces, overlap."""
    new = [f for f in train if f.fact_id in new_ids]
    rel_code = {r: i for i, r in enumerate(sorted({f.relation for f in list(watch) + list(train)}))}
    rel = np.array([rel_code[f.relation] for f in watch])
    gold = np.array([_first_token(tok, f) for f in watch])
    t_rel = np.array([rel_code[f.relation] for f in train])
    t_val = np.array([_first_token(tok, f) for f in train])
    t_new = np.array([f.fact_id in new_ids for f in train], dtype=bool)
    cols = {}
    cols.update(F.fragility(logprobs, gold, [slick.get(f.fact_id) for f in watch] if slick else None))
    cols.update(F.competition(logprobs, gold, rel, t_val, t_rel, t_new))
    pieces = lambda fs: [tok(f.subject, add_special_tokens=False)["input_ids"] for f in fs]  # noqa: E731
    cols.update(F.piece_sharing(pieces(watch), pieces(new), rel, gold, t_rel[t_new], t_val[t_new], len(tok)))
    if new:
        cols.update(F.overlap(model, tok, watch, new))
    return cols


def compute_features(model, tok, watch: Sequence[Fact], train: Sequence[Fact], new_ids: set[str],
                     slick: dict | None = None, methods: Sequence[str] = ("sft",),
                     method_options: dict | None = None, teachers: dict | None = None,
                     n_drivers: int = 3, lookahead: bool = True) -> dict[str, FeatureTable]:
    """{method: FeatureTable} for the watched facts ``watch`` against the SFT set ``train``
    (``new_ids``: the ids of its Unknown facts). ``teachers[method]``: the self-distillation
    teacher; ``method_options[method]``: the method's options (freeze groups, KL weight)."""
    if not watch or not train:
        raise ValueError("a forecast needs at least one watched fact and one SFT fact.")
    method_options, teachers = method_options or {}, teachers or {}
    out, shared = {}, None
    for m in methods:
        kw = method_alignment_args(model, m, method_options.get(m), teachers.get(m))
        al = alignment(model, tok, watch, train, **kw)
        if shared is None:  # the base's answer distribution came with the first pass over `watch`
            shared = shared_features(model, tok, watch, train, new_ids, slick, al.logprobs)
            if lookahead:
                from interference.forecast.lookahead import virtual_step
                gold = np.array([_first_token(tok, f) for f in watch])
                shared.update(virtual_step(model, tok, watch, train, new_ids, gold))
        cols = _fill_nan({**shared, **F.alignment_columns(al, len(train))})
        pair = al.pair.copy()
        is_new = np.array([f.fact_id in new_ids for f in train])
        pair[:, ~is_new] = np.inf  # drivers are new facts
        idx = F.drivers(pair, n_drivers)
        drv = [[{"fact_id": train[j].fact_id, "subject": train[j].subject, "relation": train[j].relation,
                 "value": train[j].answer, "conflict": float(-al.pair[i, j])}
                for j in idx[i] if np.isfinite(pair[i, j])] for i in range(len(watch))]
        out[m] = FeatureTable([f.fact_id for f in watch], cols, drv, m)
    return out
