"""Representation overlap between new and existing facts, and representation drift.

Why these measures: the localized-interference story says a new fact damages the old facts whose
hidden states it sits close to. "Close" is measured several ways so that a conclusion never rests
on one geometry: cosine to the nearest new facts (per existing fact: the quantity that should
predict *which* fact is forgotten), k-nearest-neighbour mixing (is a fact's neighbourhood taken
over by new facts?), linear CKA (do two paired sets share their geometry?), and a linear-probe
readout (is the right answer still decodable after the model stopped producing it?).

Every function is pure over tensors. A leading layer dimension is allowed everywhere
(``[L, n, d]``) so all layers go through one call. Cosine and kNN work in row chunks, so a
10k x 10k comparison never materialises more than ``chunk`` x n similarities at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 2048  # 2048 x 10k float32 similarities = 80 MB: fits anywhere, big enough for BLAS


@dataclass
class CosineOverlap:
    """Per existing fact: its highest cosine to any new fact, the mean of its top-k cosines, and
    which new fact is the nearest (row index into ``new``); shapes [..., n_existing]."""

    max: torch.Tensor
    topk_mean: torch.Tensor
    argmax: torch.Tensor


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.dim() < 2 or b.dim() < 2 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{what}: expected [..., n, d] tensors with the same leading dims and d, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}.")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1, eps=1e-12)


def cosine_overlap(existing: torch.Tensor, new: torch.Tensor, k: int = 10,
                   chunk: int = DEFAULT_CHUNK) -> CosineOverlap:
    """Cosine similarity of each existing fact to the new facts: max and top-k mean.

    existing [..., m, d], new [..., n, d] -> CosineOverlap with fields [..., m]. ``k`` is capped
    at n. Chunked over existing rows; the result does not depend on ``chunk``.
    """
    _check_pair(existing, new, "cosine_overlap")
    if new.shape[-2] == 0:
        raise ValueError("cosine_overlap: no new facts to compare with; pass at least one.")
    k = max(1, min(k, new.shape[-2]))
    e, nw = _unit(existing), _unit(new)
    nt = nw.transpose(-1, -2)  # [..., d, n]
    maxs, means, args = [], [], []
    for s in range(0, e.shape[-2], chunk):
        sims = e[..., s:s + chunk, :] @ nt  # [..., c, n]
        top, idx = sims.topk(k, dim=-1)  # sorted: column 0 is the max
        maxs.append(top[..., 0])
        args.append(idx[..., 0])
        means.append(top.mean(-1))
    cat = lambda xs: torch.cat(xs, dim=-1)  # noqa: E731
    return CosineOverlap(cat(maxs), cat(means), cat(args))


def knn_overlap(existing: torch.Tensor, new: torch.Tensor, k: int = 10,
                chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Share of each existing fact's k nearest neighbours (cosine, among all other existing facts
    and all new facts) that are new facts. [..., m, d], [..., n, d] -> [..., m] in [0, 1].

    Without any structure the expected share is n / (m + n - 1): compare against that.
    """
    _check_pair(existing, new, "knn_overlap")
    m = existing.shape[-2]
    k = max(1, min(k, m - 1 + new.shape[-2]))
    e, nw = _unit(existing), _unit(new)
    pool_t = torch.cat([e, nw], dim=-2).transpose(-1, -2)  # [..., d, m + n]
    out = []
    for s in range(0, m, chunk):
        sims = e[..., s:s + chunk, :] @ pool_t  # [..., c, m + n]
        rows = torch.arange(s, min(s + chunk, m))
        sims[..., torch.arange(len(rows)), rows] = -float("inf")  # a fact is not its own neighbour
        idx = sims.topk(k, dim=-1).indices
        out.append((idx >= m).float().mean(-1))
    return torch.cat(out, dim=-1)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same n items.

    x [..., n, d1], y [..., n, d2] -> [...]. Rows must be paired: the same facts in two models
    (base vs fine-tuned) or two layers, or new facts next to the existing facts they were built to
    overlap. Uses the feature-space form ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), which
    costs O(n d^2) instead of the n x n Gram matrices, so 10k items are cheap. Invariant to
    orthogonal transforms and isotropic scaling of either side; 1 for identical inputs.
    """
    if x.shape[:-1] != y.shape[:-1] or x.dim() < 2:
        raise ValueError(f"linear_cka: both sides need the same items ([..., n, d]); got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}.")
    xc = x.double() - x.double().mean(-2, keepdim=True)
    yc = y.double() - y.double().mean(-2, keepdim=True)
    cross = (yc.transpose(-1, -2) @ xc).pow(2).sum((-1, -2))
    nx = torch.linalg.matrix_norm(xc.transpose(-1, -2) @ xc)
    ny = torch.linalg.matrix_norm(yc.transpose(-1, -2) @ yc)
    return (cross / (nx * ny)).float()


def drift(now: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Representation drift: 1 - cosine between each fact's hidden state now and in the base
    model. [..., n, d] x2 -> [..., n]; 0 for an unchanged model, up to 2 for a reversed state."""
    _check_pair(now, base, "drift")
    if now.shape != base.shape:
        raise ValueError(f"drift: now {tuple(now.shape)} and base {tuple(base.shape)} must hold the same facts.")
    return 1.0 - (_unit(now) * _unit(base)).sum(-1)


@dataclass
class ProbeReadout:
    """A linear probe's answers on held-out hidden states: accuracy and per-item correctness."""

    accuracy: float
    correct: np.ndarray  # [n_test] bool
    train_accuracy: float


def probe_readout(x_train: torch.Tensor | np.ndarray, y_train, x_test: torch.Tensor | np.ndarray, y_test,
                  c: float = 1.0, seed: int = 0, max_iter: int = 500) -> ProbeReadout:
    """Fit a multinomial logistic-regression probe hidden state -> answer on ``x_train`` and ask
    whether it still reads the right answer out of ``x_test``.

    The use: train on facts the fine-tuned model still answers right, test on the facts it forgot.
    High accuracy on forgotten facts means the answer is still in the representation and the
    damage is in how it is read out; chance accuracy means the representation itself lost it.
    Test labels unseen in training count as wrong (the probe cannot name them).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    xtr = np.asarray(x_train, dtype=np.float64).reshape(len(y_train), -1)
    xte = np.asarray(x_test, dtype=np.float64).reshape(len(y_test), -1)
    ytr, yte = np.asarray(y_train), np.asarray(y_test)
    if len(set(ytr.tolist())) < 2:
        raise ValueError("probe_readout needs at least two distinct answers in the training set to fit a probe.")
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(xtr), ytr)
    train_acc = float((clf.predict(scaler.transform(xtr)) == ytr).mean())
    if len(yte) == 0:
        return ProbeReadout(float("nan"), np.zeros(0, dtype=bool), train_acc)
    correct = clf.predict(scaler.transform(xte)) == yte
    return ProbeReadout(float(correct.mean()), correct, train_acc)
