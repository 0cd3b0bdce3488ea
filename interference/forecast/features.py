"""Pure feature functions of the forecast: arrays in, named per-fact feature columns out.

Each function answers one question about a watched (existing, known) fact before any training:

- ``fragility``: how weakly does the base hold it? (gold log-prob, margin over the best other
  answer, entropy, SliCK sampling agreement). The trivial baseline every forecast must beat.
- ``competition``: how hard do the SFT facts pull its relation towards other values? (how many
  new facts of its relation teach a value, weighted by how plausible the base already finds that
  value for this prompt; whether its own runner-up is being taught).
- ``piece_sharing``: how many new facts of its relation with *another* value share name pieces
  (sub-word tokens of the subject) with it? Shared pieces share embedding rows, so a step that
  teaches a look-alike moves this fact's input too.
- ``overlap``: max cosine of its hidden state to a new fact of the same relation, per layer and
  token position (``overlap_with_new``, centred on the watched facts).
- ``alignment`` (gradient alignment per unit, see ``metrics.gradients``): turned into columns here.

Every column is oriented so that larger means "more at risk" where the direction is known
(a negated log-prob, a negated inner product); the combiner learns the rest.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from interference.hooks import EMBED_OUT, resid_posts
from interference.data import Fact
from interference.metrics.overlap import overlap_with_new

POSITIONS = ("subject_last", "last")  # the subject's last token, and the answer-predicting one
LOG_FLOOR = 1e-6  # below float32 resolution of a log-prob near 0: "no loss at all"


def fragility(logprobs: np.ndarray, gold: np.ndarray, slick: Sequence[dict | None] | None = None) -> dict[str, np.ndarray]:
    """logprobs [n, V] at the first answer position, gold [n] token ids -> columns.

    ``neg_gold_logprob``: -log p(gold) (the baseline "fragility"); ``neg_margin``: best other
    answer's log-prob minus gold's; ``entropy`` of the answer distribution; ``slick_miss``:
    1 - the SliCK sampled-answer agreement (p_sample) when SliCK rows are given.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    n = len(gold)
    g = lp[np.arange(n), gold]
    other = lp.copy()
    other[np.arange(n), gold] = -np.inf
    out = {"neg_gold_logprob": -g, "neg_margin": other.max(1) - g,
           "entropy": -(np.exp(lp) * lp).sum(1)}
    if slick is not None:
        out["slick_miss"] = np.array([1.0 - float((r or {}).get("p_sample", 1.0)) for r in slick])
    return with_logs(out, ("neg_gold_logprob", "entropy"))


def competition(logprobs: np.ndarray, gold: np.ndarray, rel: np.ndarray, train_val: np.ndarray,
                train_rel: np.ndarray, train_new: np.ndarray) -> dict[str, np.ndarray]:
    """Value competition from the SFT set. ``rel`` [n] / ``train_rel`` [m]: relation codes;
    ``train_val`` [m]: the SFT facts' answer token ids; ``train_new`` [m] bool: Unknown (new) fact.

    ``pull``: sum over new facts of the same relation with another value of the base's
    probability of that value for this prompt (how much taught mass lands where this fact's answer
    could go); ``runner_up_taught``: how many new facts teach this fact's runner-up value;
    ``neg_gold_taught``: minus how many SFT facts (any kind) of its relation teach its own value
    (they reinforce it); ``n_new_rel``: new facts of its relation.
    """
    p = np.exp(np.asarray(logprobs, dtype=np.float64))
    n, V = p.shape
    rels = np.unique(np.concatenate([rel, train_rel]))
    counts_new = {r: np.bincount(train_val[(train_rel == r) & train_new], minlength=V)[:V] for r in rels}
    counts_all = {r: np.bincount(train_val[train_rel == r], minlength=V)[:V] for r in rels}
    c_new = np.stack([counts_new[r] for r in rel]).astype(np.float64) if n else np.zeros((0, V))
    c_all = np.stack([counts_all[r] for r in rel]).astype(np.float64) if n else np.zeros((0, V))
    idx = np.arange(n)
    p_other = p.copy()
    p_other[idx, gold] = 0.0
    runner = p_other.argmax(1) if n else np.zeros(0, int)
    out = {"pull": (c_new * p_other).sum(1), "runner_up_taught": c_new[idx, runner],
           "neg_gold_taught": -c_all[idx, gold], "n_new_rel": c_new.sum(1)}
    return with_logs(out, ("pull", "runner_up_taught"))


def piece_sharing(watch_pieces: Sequence[Sequence[int]], new_pieces: Sequence[Sequence[int]], rel: np.ndarray,
                  val: np.ndarray, new_rel: np.ndarray, new_val: np.ndarray, vocab: int) -> dict[str, np.ndarray]:
    """Name pieces shared with new facts. ``*_pieces``: the subject's token ids per fact.

    ``pieces_max_diff`` / ``pieces_n_diff`` / ``pieces_n2_diff``: most pieces shared with, number
    sharing >= 1, and number sharing >= 2 pieces with, new facts of the same relation and another
    value; ``pieces_n_same``: the same count for new facts teaching its own value (reinforcing);
    ``pieces_n_any``: new facts of any relation sharing >= 1 piece (a new entity touches all of
    its relations' rows). One sparse product: linear in each count.
    """
    def bag(rows):
        m = torch.zeros(len(rows), vocab, dtype=torch.float32)
        for i, r in enumerate(rows):
            if len(r):
                m[i, torch.as_tensor(list(set(r)))] = 1.0
        return m
    shared = (bag(watch_pieces) @ bag(new_pieces).T).numpy()  # [n, m] shared piece counts
    same_rel = np.asarray(rel)[:, None] == np.asarray(new_rel)[None, :]
    diff = same_rel & (np.asarray(val)[:, None] != np.asarray(new_val)[None, :])
    same = same_rel & ~diff
    out = {"pieces_max_diff": np.where(diff, shared, 0).max(1) if shared.size else np.zeros(len(rel)),
           "pieces_n_diff": ((shared >= 1) & diff).sum(1).astype(float),
           "pieces_n2_diff": ((shared >= 2) & diff).sum(1).astype(float),
           "pieces_n_same": ((shared >= 1) & same).sum(1).astype(float),
           "pieces_n_any": (shared >= 1).sum(1).astype(float)}
    return {**out, **{f"{k}_log": np.log1p(v) for k, v in out.items() if k != "pieces_max_diff"}}


def overlap(model, tok, watch: Sequence[Fact], new: Sequence[Fact],
            positions: Sequence[str] = POSITIONS) -> dict[str, np.ndarray]:
    """``overlap_{layer}_{position}``: max cosine to a new fact of the same relation (base model),
    at the embedding output and after every block, at each position; nan where the relation has no
    new fact (filled with the column's minimum by the caller: no new fact, no overlap)."""
    from interference.probes import capture
    L = int(model.cfg.n_layers)
    hooks = [EMBED_OUT, *resid_posts(L)]
    names = ["embed"] + [f"L{i}" for i in range(L)]
    w = capture(model, tok, watch, hooks, list(positions))
    nw = capture(model, tok, new, hooks, list(positions))
    out = {}
    for k, pos in enumerate(positions):
        ws = torch.stack([w[h][:, k] for h in hooks])
        ns = torch.stack([nw[h][:, k] for h in hooks])
        ov = overlap_with_new(ws, [f.relation for f in watch], ns, [f.relation for f in new]).max
        for j, name in enumerate(names):
            out[f"overlap_{name}_{pos}"] = ov[j]
    return out


def alignment_columns(al, n_train: int) -> dict[str, np.ndarray]:
    """Columns from a ``gradients.Alignment``: per unit and over all units, the first-order loss
    increase of the watched fact under one step along the mean SFT gradient (``rise_*`` = -g_i.G/n),
    its cosine (``conflict_*`` = -cos), and the fact's gradient norm (``sens_*`` = log|g_i|:
    how far any step in that unit moves its loss); from the pair products, the most conflicting
    single SFT fact (``pair_max_conflict``, and its log) and the total conflict
    (``pair_conflict_sum``). Raw inner products are heavy-tailed: asinh keeps their sign and order
    and tames the tails before standardising."""
    n = max(1, n_train)
    out = {}
    for j, u in enumerate(al.units):
        out[f"rise_{u}"] = np.arcsinh(-al.ip[:, j] / n)
        out[f"conflict_{u}"] = -al.cos(u)
        out[f"sens_{u}"] = 0.5 * np.log(al.sq[:, j] + 1e-30)
    out["rise_all"] = np.arcsinh(-al.ip.sum(1) / n)
    out["conflict_all"] = -al.cos()
    out["sens_all"] = 0.5 * np.log(al.sq.sum(1) + 1e-30)
    conflict = np.clip(-al.pair, 0, None)
    top = conflict.max(1) if conflict.size else np.zeros(len(al.ip))
    out["pair_max_conflict"] = np.arcsinh(top)
    out["pair_log_max_conflict"] = np.log(top + LOG_FLOOR)
    out["pair_conflict_sum"] = np.arcsinh(conflict.sum(1) / n)
    return out


def with_logs(cols: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Add ``log_<name>`` for non-negative, heavy-tailed columns (a loss of 1e-4 vs 1e-2 matters
    as much as 1e-2 vs 1: logistic regression on the raw value would see only the largest)."""
    return {**cols, **{f"log_{k}": np.log(np.clip(cols[k], 0, None) + LOG_FLOOR) for k in names if k in cols}}


def drivers(pair: np.ndarray, k: int = 3) -> np.ndarray:
    """[n, k] indices of the SFT facts whose gradient conflicts most with each watched fact's
    (most negative pair product first)."""
    k = min(k, pair.shape[1])
    return np.argsort(pair, axis=1)[:, :k]
