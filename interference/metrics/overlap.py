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

Cosines are computed in float64 and clamped to [-1, 1]: in float32 the cosine of a state with
itself comes out as 1 + 1e-5 or 1 - 1e-5 depending on the CPU's summation order (thread count,
SIMD width), which made equalities and thresholds machine-dependent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 2048  # 2048 x 10k float32 similarities = 80 MB: fits anywhere, big enough for BLAS


@dataclass
class CosineOverlap:
    """Per existing fact: its highest cosine to any new fact, the mean of its top-k cosines, and
    which new fact is the nearest (row index into ``new``); shapes [..., n_existing] (float64), and
    the indices of the top-k new facts, nearest first, [..., n_existing, k]."""

    max: torch.Tensor
    topk_mean: torch.Tensor
    argmax: torch.Tensor
    topk_index: torch.Tensor


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.dim() < 2 or b.dim() < 2 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{what}: expected [..., n, d] tensors with the same leading dims and d, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}.")


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm, in float64 (see the module docstring)."""
    return F.normalize(x.double(), dim=-1, eps=1e-12)


def cosine(a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Cosine similarity along ``dim`` in float64, clamped to [-1, 1]; 0 for a zero vector. The one
    cosine of the package (overlap, drift, gradient alignment)."""
    a, b = a.double(), b.double()
    den = a.norm(dim=dim) * b.norm(dim=dim)
    return ((a * b).sum(dim) / den.clamp_min(1e-300)).clamp(-1.0, 1.0)


def cosine_overlap(existing: torch.Tensor, new: torch.Tensor, k: int = 10,
                   chunk: int = DEFAULT_CHUNK) -> CosineOverlap:
    """Cosine similarity of each existing fact to the new facts: max and top-k mean.

    existing [..., m, d], new [..., n, d] -> CosineOverlap with fields [..., m]. ``k`` is capped
    at n. Chunked over existing rows; the result does not depend on ``chunk``.

    Speed and precision: the m x n similarities are computed in float32 (a 10k x 10k comparison
    in float64 would take twice as long) only to *choose* each row's top-k candidates; their
    cosines are then recomputed in float64, clamped and re-sorted, so every returned value is the
    float64 cosine (a near-tie at float32 noise can only swap two candidates of equal cosine).
    """
    _check_pair(existing, new, "cosine_overlap")
    if new.shape[-2] == 0:
        raise ValueError("cosine_overlap: no new facts to compare with; pass at least one.")
    lead = existing.shape[:-2]
    k = max(1, min(k, new.shape[-2]))
    e64 = _unit(existing).reshape(-1, *existing.shape[-2:])  # [B, m, d]
    n64 = _unit(new).reshape(-1, *new.shape[-2:])  # [B, n, d]
    nt32 = n64.float().transpose(-1, -2)  # [B, d, n]
    b = torch.arange(e64.shape[0])[:, None, None]
    vals, idxs = [], []
    for s in range(0, e64.shape[-2], chunk):
        rows = e64[:, s:s + chunk, :]  # [B, c, d]
        cand = (rows.float() @ nt32).topk(k, dim=-1).indices  # [B, c, k]
        exact = torch.einsum("bcd,bckd->bck", rows, n64[b, cand]).clamp_(-1.0, 1.0)
        exact, order = exact.sort(dim=-1, descending=True)
        vals.append(exact)
        idxs.append(cand.gather(-1, order))
    top = torch.cat(vals, dim=-2).reshape(*lead, -1, k)
    idx = torch.cat(idxs, dim=-2).reshape(*lead, -1, k)
    return CosineOverlap(top[..., 0], top.mean(-1), idx[..., 0], idx)


def knn_overlap(existing: torch.Tensor, new: torch.Tensor, k: int = 10,
                chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Share of each existing fact's k nearest neighbours (cosine, among all other existing facts
    and all new facts) that are new facts. [..., m, d], [..., n, d] -> [..., m] in [0, 1].

    Without any structure the expected share is n / (m + n - 1): compare against that. Only the
    ranking matters here, so the similarities stay in float32.
    """
    _check_pair(existing, new, "knn_overlap")
    m = existing.shape[-2]
    k = max(1, min(k, m - 1 + new.shape[-2]))
    e, nw = _unit(existing).float(), _unit(new).float()
    pool_t = torch.cat([e, nw], dim=-2).transpose(-1, -2)  # [..., d, m + n]
    out = []
    for s in range(0, m, chunk):
        sims = e[..., s:s + chunk, :] @ pool_t  # [..., c, m + n]
        rows = torch.arange(s, min(s + chunk, m))
        sims[..., torch.arange(len(rows)), rows] = -float("inf")  # a fact is not its own neighbour
        idx = sims.topk(k, dim=-1).indices
        out.append((idx >= m).float().mean(-1))
    return torch.cat(out, dim=-1)


@dataclass
class NewOverlap:
    """Per watched fact (and layer): its overlap with the new facts of its own relation.

    ``max`` [L, m]: highest centred cosine (nan when no new fact shares the relation);
    ``nearest`` [L, m]: index into the new facts of that nearest one (-1 when none);
    ``neighbours`` [L, m, k]: the k nearest of the same relation, nearest first (-1 padded)."""

    max: np.ndarray
    nearest: np.ndarray
    neighbours: np.ndarray


def overlap_with_new(watch_states: torch.Tensor, watch_relations: Sequence[str], new_states: torch.Tensor,
                     new_relations: Sequence[str], k: int = 1) -> NewOverlap:
    """The overlap that decides the localized-interference statistics (and the probe analysis'
    figure): per watched fact, the max cosine to any new fact *of the same relation*, with both
    sides centred on the watched facts' mean state.

    Why centred: every state carries a large shared component (the template, the position), so raw
    cosines are all near 1 and rank facts by noise; subtracting the watched facts' mean leaves the
    fact-specific part. Why the same relation: a new fact can only take over the answer slot of its
    own relation (a birthplace does not overwrite a job). States: [L, m, d] and [L, n, d] (or
    [m, d] and [n, d], giving [1, m] outputs).
    """
    if watch_states.dim() == 2:
        watch_states, new_states = watch_states.unsqueeze(0), new_states.unsqueeze(0)
    _check_pair(watch_states, new_states, "overlap_with_new")
    L, m = watch_states.shape[:2]
    if len(watch_relations) != m or len(new_relations) != new_states.shape[1]:
        raise ValueError(f"overlap_with_new: {m} watched states for {len(watch_relations)} relations and "
                         f"{new_states.shape[1]} new states for {len(new_relations)}; pass one relation per fact.")
    mu = watch_states.double().mean(1, keepdim=True)
    e, nw = watch_states.double() - mu, new_states.double() - mu
    ov, arg = np.full((L, m), np.nan), np.full((L, m), -1, dtype=int)
    nb = np.full((L, m, k), -1, dtype=int)
    for r in sorted(set(watch_relations)):
        wi = [i for i, x in enumerate(watch_relations) if x == r]
        ni = np.array([j for j, x in enumerate(new_relations) if x == r], dtype=int)
        if not len(ni):
            continue
        co = cosine_overlap(e[:, wi], nw[:, ni], k=k)
        ov[:, wi] = co.max.numpy()
        arg[:, wi] = ni[co.argmax.numpy()]
        nb[:, wi, :co.topk_index.shape[-1]] = ni[co.topk_index.numpy()]
    return NewOverlap(ov, arg, nb)


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
    return (cross / (nx * ny)).clamp(0.0, 1.0).float()  # clamped: rounding can pass 1 for identical inputs


def drift(now: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Representation drift: 1 - cosine between each fact's hidden state now and in the base
    model. [..., n, d] x2 -> [..., n] float64; 0 (to float64 rounding) for an unchanged model, up to 2 for a
    reversed state."""
    _check_pair(now, base, "drift")
    if now.shape != base.shape:
        raise ValueError(f"drift: now {tuple(now.shape)} and base {tuple(base.shape)} must hold the same facts.")
    return 1.0 - cosine(now, base)


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
