"""Culprit attribution: which SFT examples the forecast blames for each watched fact's risk.

Why: the forecast says *which* known facts an SFT set will break; to act on it (drop or rewrite
examples, replay facts) one needs *which examples* break them, and a claim that can be proven by
removing them. This module turns the forecast's per-pair gradient products into that claim.

The score, first order and documented as such. Fine-tuning moves the parameters by
``-lr / B * sum_{j in batch} g_j`` per step (mean loss over a batch of B; plain gradient steps,
the same linearisation at the base weights that the forecast's alignment features make: Adam's
per-coordinate scaling and the curvature of the path are left out). Over a run of ``steps``
steps an epoch-permutation loop shows each of the N SFT examples ``steps * B / N`` times, so
example j's share of the total update is ``-lr * steps / N * g_j`` and, to first order, it raises
watched fact i's loss by

    score[i, j] = -scale * g_i . g_j,   scale = lr * steps / N  (= lr * epochs / B)

Removing j removes exactly that term, so ``score[i, j]`` is the predicted rescue of fact i
(in nats of its loss) from dropping j, and the predicted rescue from dropping a set is the sum
of its scores. ``g_i . g_j`` is ``gradients.alignment``'s ``pair`` (the answer position of each
example, summed over the linear units: the factorisation's cheap case), here computed without
the forecast's per-unit features so 10,000 x 1,000 costs one forward+backward per set.

Culprits of fact i: the SFT examples with the largest positive scores, most harmful first.
``rise[i]`` (the sum of every score of fact i) is the first-order loss rise the whole set causes,
``rescue[i]`` what its top-k culprits account for.

``choose_removals`` spends a removal budget on a list of target facts: round-robin over the
targets in the order given (most at risk first), each taking its best culprit not chosen yet,
so every target loses its top culprit before any loses its second (a plain sum of scores would
let the one fact with the largest gradients take the whole budget).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from interference.data import Fact
from interference.metrics.gradients import _answer_pos, _with_bias, collect, linear_modules


def answer_factors(model, tok, facts: Sequence[Fact], modules: dict, batch_size: int = 256):
    """Per linear module, the answer-position input ``a`` [n, d_in(+1)] and output-gradient ``d``
    [n, d_out] of every fact (one forward+backward pass per batch), float32."""
    a = {n: [] for n in modules}
    d = {n: [] for n in modules}
    for _rows, batch, st, _loss, _lp in collect(model, tok, facts, modules, batch_size):
        pos = _answer_pos(batch)
        idx = torch.arange(len(batch))
        for name, mod in modules.items():
            a[name].append(_with_bias(st.a[name][idx, pos], mod).float())
            d[name].append(st.d[name][idx, pos].float())
    return {n: torch.cat(a[n]) for n in modules}, {n: torch.cat(d[n]) for n in modules}


def pair_products(model, tok, watch: Sequence[Fact], train: Sequence[Fact], batch_size: int = 256) -> np.ndarray:
    """[n_watch, n_train] answer-position ``g_i . g_j`` summed over the linear units: the same
    quantity as ``gradients.alignment(...).pair`` (for every unit), without its per-unit features."""
    mods = {n: m for n, m in linear_modules(model).items() if isinstance(m, torch.nn.Linear)}
    A, D = answer_factors(model, tok, train, mods, batch_size)
    out = np.zeros((len(watch), len(train)))
    for rows, batch, st, _loss, _lp in collect(model, tok, watch, mods, batch_size):
        pos = _answer_pos(batch)
        idx = torch.arange(len(batch))
        pr = torch.zeros(len(batch), len(train))
        for name, mod in mods.items():
            aw, dw = _with_bias(st.a[name][idx, pos], mod).float(), st.d[name][idx, pos].float()
            pr += (aw @ A[name].T) * (dw @ D[name].T)
        out[rows.start:rows.stop] = pr.double().numpy()
    return out


def step_scale(lr: float, steps: int, n_train: int) -> float:
    """``lr * steps / N``: how much of one example's gradient a whole run applies (see the module
    docstring)."""
    if lr <= 0 or steps < 1 or n_train < 1:
        raise ValueError(f"lr={lr}, steps={steps}, n_train={n_train}: a run needs a positive lr, steps and SFT set.")
    return lr * steps / n_train


def culprit_scores(pair: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """[n_watch, n_train] predicted loss rise of watched fact i caused by SFT example j."""
    return -scale * np.asarray(pair, float)


@dataclass
class Culprits:
    """Each watched fact's top-k culprits in the SFT set (indices into ``train_ids``, most
    harmful first; only examples with a positive score are culprits, so a row may be shorter)."""
    watch_ids: list[str]
    train_ids: list[str]
    top: list[list[int]]  # per watched fact: culprit indices into train_ids
    top_scores: list[list[float]]  # their scores (predicted loss rise each causes, nats)
    rise: np.ndarray  # [n_watch] first-order loss rise the whole SFT set causes
    rescue: np.ndarray  # [n_watch] the part of it the listed culprits cause
    scale: float

    def of(self, fact_id: str) -> list[tuple[str, float]]:
        """(SFT fact id, score) of one watched fact's culprits."""
        try:
            i = self.watch_ids.index(fact_id)
        except ValueError:
            raise KeyError(f"fact {fact_id!r} is not among the watched facts of these culprits.") from None
        return [(self.train_ids[j], s) for j, s in zip(self.top[i], self.top_scores[i])]

    def row(self, i: int) -> dict:
        """JSON row of watched fact ``i``."""
        rise = float(self.rise[i])
        return {"fact_id": self.watch_ids[i], "predicted_rise": round(rise, 6),
                "predicted_rescue": round(float(self.rescue[i]), 6),
                "rescue_share": round(float(self.rescue[i]) / rise, 4) if rise > 0 else None,
                "culprits": [{"fact_id": self.train_ids[j], "score": round(s, 6)}
                             for j, s in zip(self.top[i], self.top_scores[i])]}

    def to_dict(self) -> dict:
        return {"scale": self.scale, "n_train": len(self.train_ids), "rows": [self.row(i) for i in range(len(self.watch_ids))]}


def top_culprits(scores: np.ndarray, watch_ids: Sequence[str], train_ids: Sequence[str], k: int = 5,
                 among: np.ndarray | None = None, scale: float = 1.0) -> Culprits:
    """The top ``k`` culprits of every watched fact from a score matrix (``culprit_scores``).
    ``among``: a boolean mask over the SFT examples that may be culprits (e.g. only the new facts)."""
    scores = np.asarray(scores, float)
    if scores.shape != (len(watch_ids), len(train_ids)):
        raise ValueError(f"scores are {scores.shape} but there are {len(watch_ids)} watched and "
                         f"{len(train_ids)} SFT facts.")
    if k < 1:
        raise ValueError(f"k={k}: ask for at least one culprit per fact.")
    s = scores if among is None else np.where(np.asarray(among, bool)[None, :], scores, -np.inf)
    k = min(k, scores.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(s.shape[1]), (len(s), 1))
    vals = np.take_along_axis(s, part, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    part, vals = np.take_along_axis(part, order, 1), np.take_along_axis(vals, order, 1)
    keep = vals > 0
    top = [[int(j) for j, ok in zip(p, m) if ok] for p, m in zip(part, keep)]
    top_s = [[float(v) for v, ok in zip(r, m) if ok] for r, m in zip(vals, keep)]
    return Culprits(list(watch_ids), list(train_ids), top, top_s, scores.sum(1),
                    np.where(keep, vals, 0.0).sum(1), scale)


def culprits(model, tok, watch: Sequence[Fact], train: Sequence[Fact], k: int = 5, scale: float = 1.0,
             among: Sequence[str] | None = None, batch_size: int = 256) -> tuple[Culprits, np.ndarray]:
    """(top-k culprits per watched fact, the full score matrix) from the base model and the SFT
    set alone. ``scale``: ``step_scale(lr, steps, len(train))`` of the planned run (1 ranks the
    same; only the units of the scores change). ``among``: ids of the SFT facts that may be culprits."""
    if not watch or not train:
        raise ValueError("culprits need at least one watched fact and one SFT fact.")
    scores = culprit_scores(pair_products(model, tok, watch, train, batch_size), scale)
    mask = None if among is None else np.array([f.fact_id in set(among) for f in train])
    return top_culprits(scores, [f.fact_id for f in watch], [f.fact_id for f in train], k, mask, scale), scores


def choose_removals(c: Culprits, targets: Sequence[str], budget: int) -> list[str]:
    """Up to ``budget`` SFT fact ids to drop so as to save ``targets`` (watched fact ids, most at
    risk first): round-robin, each target in turn takes its best culprit not yet chosen (see the
    module docstring). Fewer come back when the targets' culprit lists run out."""
    if budget < 0:
        raise ValueError(f"budget={budget}: a number of SFT examples to remove cannot be negative.")
    pos = {fid: i for i, fid in enumerate(c.watch_ids)}
    missing = [t for t in targets if t not in pos]
    if missing:
        raise KeyError(f"target {missing[0]!r} is not among the watched facts of these culprits.")
    lists = [c.top[pos[t]] for t in targets]
    chosen: list[int] = []
    seen: set[int] = set()
    depth = 0
    while len(chosen) < budget and any(depth < len(lst) for lst in lists):
        for lst in lists:
            if len(chosen) >= budget:
                break
            # each target's best culprit not taken yet, at this round
            for j in lst:
                if j not in seen:
                    seen.add(j)
                    chosen.append(j)
                    break
        depth += 1
    return [c.train_ids[j] for j in chosen]


# ------------------------------------------------------------------ from a forecast to a curation
def budget_of(share: float, n_train: int) -> int:
    """Examples a budget of ``share`` of an SFT set of ``n_train`` allows (at least 1)."""
    if not 0 < share <= 1:
        raise ValueError(f"budget {share} is not a share of the SFT set in (0, 1]; pass e.g. 0.05.")
    return max(1, round(share * n_train))


def curation(fc, sft_data, base=None, k: int = 5, at_risk: int | None = None, budget: float = 0.05) -> dict:
    """Culprits of a forecast's at-risk facts and what to do about them, as three JSON objects:
    ``culprits`` (per at-risk fact, most at risk first: risk, predicted rise and rescue, its top
    ``k`` culprits), ``exclude`` (SFT ids to drop: ``choose_removals`` within ``budget`` x the SFT
    set) and ``replay`` (the at-risk known facts, as many as the budget allows). ``fc``: a
    ``Forecast`` of ``sft_data`` (its ranking picks the at-risk facts: the top ``at_risk``, default
    the top 5% of watched facts). Culprits are plain SFT's (the gradients of the answer loss)."""
    from interference.forecast.api import resolve_inputs
    from interference.loop import steps_for_epochs
    model, tok, _base_dir, watch, train, _new, _slick, cfg = resolve_inputs(sft_data, base)
    n_at = at_risk if at_risk is not None else max(1, round(0.05 * len(watch)))
    if n_at < 1:
        raise ValueError("at_risk must be a positive number of facts.")
    rows = fc.rows(n_at)
    by_id = {f.fact_id: f for f in watch}
    targets = [by_id[r["fact_id"]] for r in rows]
    scale = 1.0
    if cfg is not None:
        steps = cfg.steps if cfg.steps is not None else steps_for_epochs(len(train), cfg.batch_size, cfg.epochs)
        scale = step_scale(cfg.lr, steps, len(train))
    c, _ = culprits(model, tok, targets, train, k=k, scale=scale)
    n = budget_of(budget, len(train))
    drop = choose_removals(c, [t.fact_id for t in targets], n)
    out_rows = [{"rank": r["rank"], "risk": r["risk"], "subject": r["subject"], "relation": r["relation"],
                 "answer": r["answer"], **c.row(i)} for i, r in enumerate(rows)]
    facts = {f.fact_id: f for f in train}
    for row in out_rows:
        for cu in row["culprits"]:
            f = facts[cu["fact_id"]]
            cu.update(subject=f.subject, relation=f.relation, value=f.answer)
    src = str(sft_data)
    return {"culprits": {"method": "sft", "scale": scale, "k": k, "n_train": len(train), "n_watched": len(watch),
                         "rows": out_rows},
            "exclude": {"exclude": drop, "budget": n, "targets": [t.fact_id for t in targets], "sft_data": src},
            "replay": {"replay": [t.fact_id for t in targets][:n], "budget": n, "sft_data": src}}
