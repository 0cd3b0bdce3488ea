"""Per-fact predictors of forgetting, and how much a mechanistic predictor adds to the trivial one.

Why: a fact the base model barely knew (low gold log-probability) is the first to go whatever
the mechanism, so "overlap predicts forgetting" means little unless overlap predicts it *beyond*
that fragility baseline. The test here is honest in two ways: the predictor is fitted on some seeds
and scored on a held-out seed (leave-one-seed-out), and the answer is the AUROC increment of
baseline + predictor over baseline alone, with its spread over held-out seeds. Features enter the
logistic model as rank-based normal scores (``metrics.logistic.Scaler.fit`` says why a z-score is not enough).

Predictors computed before any fine-tuning step (a-priori):
- ``gradient_conflict``: -(g_i . u), with g_i the gradient of fact i's summed answer NLL and u the
  unit direction of the new facts' summed-NLL gradient, all at the base weights: the first-order
  rise of fact i's loss per unit step down the new-fact gradient. A view of the package's one
  gradient alignment (``metrics.gradients``: one batched forward+backward pass per set, over the
  linear and embedding weights; LayerNorm gains are left out there, and say why).
- ``shared_pieces``: the most name pieces a watched entity shares with any new entity.
- representation overlap (max cosine to the new facts' subject states) lives in
  ``interference.metrics.overlap``.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from interference.data import Fact
from interference.metrics.gradients import alignment
from interference.metrics.logistic import fit_logistic
from interference.metrics.stats import auroc


def gradient_conflict(model, tokenizer, facts: Sequence[Fact], new_facts: Sequence[Fact], chunk: int = 256) -> np.ndarray:
    """Per fact: -(grad of its summed answer NLL) . (unit direction of the new facts' summed-NLL
    gradient), at the current weights. Positive = a step that teaches the new facts raises this
    fact's loss (conflict). A view of the one alignment (``metrics.gradients.alignment``, summed
    over its units); the model's ``requires_grad`` flags, ``.grad`` buffers and mode are restored."""
    if not facts or not new_facts:
        raise ValueError("gradient_conflict needs at least one watched fact and one new fact.")
    al = alignment(model, tokenizer, facts, new_facts, batch_size=chunk, reduction="sum")
    norm = math.sqrt(float(al.g_sq.sum()))
    if norm == 0:
        raise ValueError("the new facts' loss gradient is zero (already learned?); nothing to align with.")
    return -al.ip.sum(1) / norm


def shared_pieces(watch_pieces: Sequence[Sequence[str]], new_pieces: Sequence[Sequence[str]]) -> np.ndarray:
    """Per watched name: the largest number of pieces it shares with any new name."""
    new_sets = [set(p) for p in new_pieces]
    return np.array([max((len(set(w) & n) for n in new_sets), default=0) for w in watch_pieces], dtype=float)


def _fit_score(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, seed: int) -> np.ndarray:
    scaler, clf = fit_logistic(xtr, ytr, "normal", C=1.0, max_iter=1000, random_state=seed)
    return clf.decision_function(scaler(xte))


def auroc_increment(features: Mapping[int, np.ndarray], labels: Mapping[int, np.ndarray],
                    baseline: Sequence[int], added: Sequence[int]) -> dict:
    """Leave-one-seed-out AUROC of a logistic model on ``baseline`` feature columns, and on
    ``baseline`` + ``added`` columns, per held-out seed.

    ``features[seed]`` is [n_facts, n_features], ``labels[seed]`` [n_facts] bool (forgotten).
    Rows with a non-finite feature are dropped. Returns {"seeds", "auroc_baseline",
    "auroc_full", "increment"} (lists over held-out seeds; nan where a seed or its training pool
    lacks one class). Needs at least two seeds."""
    seeds = sorted(features)
    if len(seeds) < 2:
        raise ValueError("auroc_increment fits on some seeds and scores on another; pass at least two seeds.")
    cols_b, cols_f = list(baseline), list(baseline) + list(added)
    clean = {}
    for s in seeds:
        x, y = np.asarray(features[s], float), np.asarray(labels[s], bool)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"seed {s}: {x.shape[0]} feature rows but {y.shape[0]} labels.")
        ok = np.all(np.isfinite(x[:, cols_f]), axis=1)
        clean[s] = (x[ok], y[ok])
    res = {"seeds": seeds, "auroc_baseline": [], "auroc_full": [], "increment": []}
    for s in seeds:
        xtr = np.concatenate([clean[t][0] for t in seeds if t != s])
        ytr = np.concatenate([clean[t][1] for t in seeds if t != s])
        xte, yte = clean[s]
        if ytr.all() or not ytr.any() or yte.all() or not yte.any():
            a_b = a_f = math.nan
        else:
            a_b = auroc(_fit_score(xtr[:, cols_b], ytr, xte[:, cols_b], s), yte)
            a_f = auroc(_fit_score(xtr[:, cols_f], ytr, xte[:, cols_f], s), yte)
        res["auroc_baseline"].append(a_b)
        res["auroc_full"].append(a_f)
        res["increment"].append(a_f - a_b)
    return res
