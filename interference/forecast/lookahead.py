"""A virtual step: where one large step along the SFT set's own gradient would leave each known fact.

Why: gradient alignment (``metrics.gradients``) is the *first-order* change of a watched fact's
loss along the SFT direction. Forgetting is a threshold event (the answer flips to another value),
and whether a fact crosses it depends on the loss surface beyond first order: a fact whose loss
rises slowly at first but whose margin collapses once the step is as large as the SFT set needs.
So we take the direction the SFT set pulls the base in, choose the step length from the SFT set
alone (the step that most lowers the loss of its new facts along that line), and read every
watched fact's answer at a few multiples of that step.

Still a-priori: it uses the base weights and the SFT set only; no optimiser, no data order and no
state of the fine-tuning run being forecast enters, and the weights are restored afterwards.

Directions:
- ``grad``: the mean SFT-loss gradient (plain gradient descent's first step);
- ``sign``: its sign (Adam's early steps move every coordinate by about the learning rate,
  whatever the gradient's size).

Columns (``la_`` prefix; larger = more at risk): ``la_{dir}_{mult}_dloss`` = asinh of the rise
of the fact's answer NLL, ``la_{dir}_{mult}_margin`` = best other first-token log-prob minus the
gold one after the step.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from interference.batching import pack
from interference.data import Fact
from interference.metrics.gradients import per_example_loss
from interference.models import model_device

DIRECTIONS = ("grad", "sign")
MULTS = (0.5, 1.0, 2.0)  # multiples of the line-search step: before, at, and past the SFT set's own optimum
# Candidate step lengths as a fraction of the weights' norm: from a step that changes nothing
# visible (1e-3) to one as large as the weights (1); 13 points, a factor ~1.8 apart.
GRID = np.logspace(-3, 0, 13)


def _losses(model, tok, facts: Sequence[Fact], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """([n] answer NLL, [n, V] first-answer-token log-probs) at the current weights."""
    dev = model_device(model)
    out_l, out_p = [], []
    with torch.no_grad():
        for s in range(0, len(facts), batch_size):
            b = pack(tok, [(f.prompt, f.answer) for f in facts[s:s + batch_size]], int(model.cfg.n_ctx)).to(dev)
            loss, lp = per_example_loss(model, b)
            out_l.append(loss.double().cpu().numpy())
            out_p.append(lp.double().cpu().numpy())
    return np.concatenate(out_l), np.concatenate(out_p)


def _mean_gradient(model, tok, facts: Sequence[Fact], params, batch_size: int) -> list[torch.Tensor]:
    dev = model_device(model)
    g = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for s in range(0, len(facts), batch_size):
        b = pack(tok, [(f.prompt, f.answer) for f in facts[s:s + batch_size]], int(model.cfg.n_ctx)).to(dev)
        loss, _ = per_example_loss(model, b)
        for acc, gi in zip(g, torch.autograd.grad(loss.sum() / len(facts), params, allow_unused=True)):
            if gi is not None:
                acc += gi.double()
    return g


def _margin(lp: np.ndarray, gold: np.ndarray) -> np.ndarray:
    idx = np.arange(len(gold))
    other = lp.copy()
    other[idx, gold] = -np.inf
    return other.max(1) - lp[idx, gold]


def virtual_step(model, tok, watch: Sequence[Fact], train: Sequence[Fact], new_ids: set[str], gold: np.ndarray,
                 directions: Sequence[str] = DIRECTIONS, mults: Sequence[float] = MULTS,
                 batch_size: int = 256) -> dict[str, np.ndarray]:
    """Columns of the virtual step (module docstring). ``gold`` [n]: each watched fact's first
    answer token id. The step length is chosen on the SFT set's new facts (``new_ids``; all of
    ``train`` when it has none). Weights, ``requires_grad`` flags and train/eval mode are restored."""
    if not watch or not train:
        raise ValueError("a virtual step needs at least one watched fact and one SFT fact.")
    unknown = [f for f in train if f.fact_id in new_ids] or list(train)
    params = [p for p in model.parameters()]
    flags, was = [p.requires_grad for p in params], model.training
    saved = [p.detach().clone() for p in params]
    model.eval()
    out = {}
    try:
        for p in params:
            p.requires_grad_(True)
        G = _mean_gradient(model, tok, train, params, batch_size)
        for p in params:
            p.requires_grad_(False)
        w_norm = float(torch.sqrt(sum((s.double() ** 2).sum() for s in saved)))
        loss0, _ = _losses(model, tok, watch, batch_size)

        def set_step(direction, t):
            with torch.no_grad():
                for p, s, d in zip(params, saved, direction):
                    p.copy_((s.double() - t * d).to(p.dtype))

        for name in directions:
            raw = G if name == "grad" else [g.sign() for g in G]
            norm = float(torch.sqrt(sum((d ** 2).sum() for d in raw)))
            if norm == 0:
                raise ValueError("the SFT set's loss gradient is zero (already learned?); no direction to step along.")
            unit = [d / norm for d in raw]
            curve = []
            for frac in GRID:
                set_step(unit, frac * w_norm)
                curve.append(float(_losses(model, tok, unknown, batch_size)[0].mean()))
            t_star = float(GRID[int(np.argmin(curve))]) * w_norm
            for m in mults:
                set_step(unit, m * t_star)
                loss, lp = _losses(model, tok, watch, batch_size)
                out[f"la_{name}_{m:g}_dloss"] = np.arcsinh(loss - loss0)
                out[f"la_{name}_{m:g}_margin"] = _margin(lp, np.asarray(gold))
    finally:
        with torch.no_grad():
            for p, s, f in zip(params, saved, flags):
                p.copy_(s)
                p.requires_grad_(f)
        model.train(was)
    return out
