"""Activation patching of subject states: does putting a fact's old representation back bring the
fact back?

Why: localized interference says a forgotten fact was lost because the fine-tuning moved the
representation its entity shares with the new look-alike. Then overwriting, in the fine-tuned
model, the subject's last-token residual stream (``blocks.{i}.hook_resid_post``) with the *base*
model's state of the same prompt should restore the answer, and overwriting it with the base state
of some *other* entity (the control) should not. If the damage sits downstream (in the read-out
that every fact shares, as behavior cloning would have it), neither patch helps.

A structural fact worth knowing when reading the results: the last layer's resid_post at the
subject position is read by nothing (no later layer attends to it), so patching it changes no
output; the per-layer curve must fall to exactly the unpatched rate there.

Position sets (``position_sets``). The subject's last token alone is the one piece of a share2
target that its look-alike does *not* share (look-alikes keep the target's first pieces), so the
mended instrument patches three sets of subject tokens at once, at the embedding output
(``embed.hook_out``) and after every block: every subject token (``subject``), the tokens at the
positions the look-alike keeps (``shared``; empty, hence not applicable, for keys that share no
piece such as uuid), and the last one (``subject_last``, the original reading). Two controls per
set: a random other entity's base states (``control_donor_index``) and the mean base state over
the other entities of the same relation and prompt length (``SequenceStates.mean_of``, leaving
the fact itself out): a patch that restores the fact with its own state but not with the mean
carries fact-specific information, not just "a typical name sits here".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from interference.hooks import EMBED_OUT, resid_post, resid_posts
from interference.data import Fact
from interference.models import model_device
from interference.probes import check_hooks, plan_capture, subject_tokens
from interference.tokenizer import encode_qa


def resid_hook(layer: int) -> str:
    return resid_post(layer)


@dataclass
class PatchOutcome:
    """Per fact, after patching at one hook: the greedy first answer token is the gold one, and the
    gold first-token log-probability."""

    correct: np.ndarray  # [n] bool
    gold_logprob: np.ndarray  # [n] float


def _gold_first_token(tokenizer, facts: Sequence[Fact]) -> torch.Tensor:
    return torch.tensor([encode_qa(tokenizer, f.prompt, f.answer)[1][0] for f in facts])


@torch.no_grad()
def patched_answers(model, tokenizer, facts: Sequence[Fact], hook: str | None,
                    donor: torch.Tensor | None = None, position: str = "subject_last") -> PatchOutcome:
    """Answer ``facts`` with ``model`` while the state at ``hook`` and ``position`` of fact i is
    replaced by ``donor[i]`` ([n, d]); ``hook=None`` answers unpatched.

    Answers are judged on their first token (every value in the synthetic world is one word-level
    token). Facts are batched by equal prompt length, so there is no padding.
    """
    if hook is not None and (donor is None or donor.shape[0] != len(facts)):
        raise ValueError(f"patching {len(facts)} facts needs one donor state per fact "
                         f"(got {None if donor is None else tuple(donor.shape)}).")
    def patch(rows, ids, pos):
        if hook is None:
            return None
        d, pos = donor[rows].to(ids.device, dtype=torch.float32), pos[:, 0].to(ids.device)

        def fn(act, hook=None, d=d, pos=pos):  # noqa: ARG001 (TransformerLens passes the hook point)
            act = act.clone()
            act[torch.arange(act.shape[0], device=act.device), pos] = d.to(act.dtype)
            return act
        return fn
    return _answer_first_tokens(model, tokenizer, facts, position, hook, patch)


def _answer_first_tokens(model, tokenizer, facts: Sequence[Fact], position: str, hook: str | None, patch) -> PatchOutcome:
    """The one scoring loop of both patchers: facts batched by prompt length (``plan_capture`` at
    ``position``), each batch answered with the forward hook ``patch(rows, ids, pos)`` returns at
    ``hook`` (None: unpatched), judged on the gold first token; the model's mode is restored."""
    dev = model_device(model)
    gold = _gold_first_token(tokenizer, facts).to(dev)
    plan = plan_capture(tokenizer, facts, [position])
    correct = np.zeros(len(facts), bool)
    lp = np.full(len(facts), math.nan)
    was = model.training
    model.eval()
    try:
        for rows, ids, pos in plan.batches:
            ids = ids.to(dev)
            fn = patch(rows, ids, pos)
            logits = model(ids) if fn is None else model.run_with_hooks(ids, fwd_hooks=[(hook, fn)])
            logits = logits if isinstance(logits, torch.Tensor) else logits.logits
            last = logits[:, -1].float().log_softmax(-1)
            g = gold[rows.to(dev)]
            correct[rows.numpy()] = (last.argmax(-1) == g).cpu().numpy()
            lp[rows.numpy()] = last.gather(-1, g[:, None]).squeeze(-1).cpu().numpy()
    finally:
        model.train(was)
    return PatchOutcome(correct, lp)


def restore_by_layer(model, tokenizer, facts: Sequence[Fact], donors: dict[int, torch.Tensor]) -> dict[int, PatchOutcome]:
    """``patched_answers`` at ``blocks.{layer}.hook_resid_post`` for each layer's donor states."""
    return {layer: patched_answers(model, tokenizer, facts, resid_hook(layer), d) for layer, d in donors.items()}


def restore_rate(outcome: PatchOutcome, mask=None) -> float:
    """Share of the facts (within ``mask``, e.g. the forgotten ones) answered right after patching."""
    c = outcome.correct if mask is None else outcome.correct[np.asarray(mask, bool)]
    return float(c.mean()) if c.size else math.nan


def control_donor_index(facts: Sequence[Fact], tokenizer, seed: int = 0, pool: Sequence[Fact] | None = None) -> list[int]:
    """For each fact, the index into ``pool`` (default: ``facts``) of another entity's fact with the
    same relation, the same gold answer *not* shared, and the same prompt length (so the patched
    position means the same thing); -1 where no such fact exists."""
    pool = list(facts if pool is None else pool)
    rng = np.random.default_rng(seed)
    length = lambda f: len(encode_qa(tokenizer, f.prompt, f.answer)[0])  # noqa: E731
    plen = [length(f) for f in pool]
    out = []
    for f in facts:
        ent = f.entity_id or f.subject
        lf = length(f)
        cand = [j for j, g in enumerate(pool) if g.relation == f.relation and (g.entity_id or g.subject) != ent
                and g.answer != f.answer and plen[j] == lf]
        out.append(int(rng.choice(cand)) if cand else -1)
    return out


# ------------------------------------------------------------------ position sets, every layer
POSITION_SETS = ("subject", "shared", "subject_last")  # every subject token / the look-alike's kept ones / the last
MEAN_MIN_POOL = 5  # the mean control needs at least this many other entities' states to average


def patch_hooks(n_layers: int) -> list[str]:
    """Where the per-layer sweep patches: the token embeddings entering block 0, then the residual
    stream after every block."""
    return [EMBED_OUT, *resid_posts(n_layers)]


def layer_label(hook: str) -> str:
    """``embed`` for the embedding output, ``L{i}`` for ``blocks.{i}.hook_resid_post`` (the label
    the original per-layer keys use)."""
    if hook == EMBED_OUT:
        return "embed"
    parts = hook.split(".")
    if len(parts) == 3 and parts[0] == "blocks" and parts[2] == "hook_resid_post":
        return f"L{int(parts[1])}"
    raise ValueError(f"no layer label for hook {hook!r}; patch at {EMBED_OUT!r} or a blocks.i.hook_resid_post.")


def position_sets(tokenizer, fact: Fact, keep: Sequence[int] | None) -> dict[str, list[int]]:
    """Token indices (into the fact's prompt) of each ``POSITION_SETS`` entry. ``keep`` is the
    arm's kept name positions (``LocalizedArm.keep``: the k-th subject token for each k); None or
    () gives an empty ``shared`` set. A kept position past the end of a shorter name is skipped."""
    _, inside = subject_tokens(tokenizer, fact)
    shared = [inside[k] for k in (keep or ()) if k < len(inside)]
    return {"subject": list(inside), "shared": shared, "subject_last": [inside[-1]]}


@dataclass
class SequenceStates:
    """Base states at every prompt position, per hook: in full for the facts asked for (``rows``),
    and as a running sum per group of facts (same relation, same prompt length: the same template
    and name length, so position k means the same thing in every member) for the mean control.
    Sums, not every state, so a real model's thousands of watched facts never sit in memory."""

    rows: dict[int, dict[str, torch.Tensor]]  # fact index -> hook -> [L, d]
    sums: dict[tuple, dict[str, torch.Tensor]]  # group -> hook -> [L, d] (float64)
    counts: dict[tuple, int]
    group: list[tuple]  # per fact

    def mean_of(self, i: int, hook: str) -> torch.Tensor | None:
        """The mean state of the *other* members of fact i's group ([L, d]); None when fewer than
        ``MEAN_MIN_POOL`` others exist."""
        g = self.group[i]
        n = self.counts[g] - 1
        if n < MEAN_MIN_POOL:
            return None
        return ((self.sums[g][hook] - self.rows[i][hook].double()) / n).float()

    def pool(self, i: int) -> int:
        """How many other entities' states ``mean_of`` averages for fact i."""
        return self.counts[self.group[i]] - 1


@torch.no_grad()
def sequence_states(model, tokenizer, facts: Sequence[Fact], hooks: Sequence[str], rows: Sequence[int],
                    batch_size: int = 256) -> SequenceStates:
    """One pass over ``facts`` (equal-length batches, no padding): every position's state at
    ``hooks`` kept for ``rows``, summed per (relation, prompt length) group for all."""
    hooks = list(dict.fromkeys(hooks))
    check_hooks(model, hooks)
    keep = set(int(r) for r in rows)
    plan = plan_capture(tokenizer, facts, ["last"], batch_size)
    group = [None] * len(facts)
    out = SequenceStates({}, {}, {}, group)
    dev = model_device(model)
    was = model.training
    model.eval()
    try:
        for b_rows, ids, _ in plan.batches:
            b_rows = b_rows.tolist()
            members: dict[tuple, list[int]] = {}
            for j, i in enumerate(b_rows):
                group[i] = (facts[i].relation, int(ids.shape[1]))
                members.setdefault(group[i], []).append(j)
                out.counts[group[i]] = out.counts.get(group[i], 0) + 1
            _, cache = model.run_with_cache(ids.to(dev), names_filter=hooks, return_cache_object=False)
            for h in hooks:
                act = cache[h].reshape(ids.shape[0], ids.shape[1], -1).float().cpu()
                for g, js in members.items():
                    part = act[js].double().sum(0)
                    acc = out.sums.setdefault(g, {})
                    acc[h] = acc[h] + part if h in acc else part
                for j, i in enumerate(b_rows):
                    if i in keep:
                        out.rows.setdefault(i, {})[h] = act[j].clone()
    finally:
        model.train(was)
    return out


@torch.no_grad()
def patched_at(model, tokenizer, facts: Sequence[Fact], hook: str, donors: Sequence[torch.Tensor],
               positions: Sequence[Sequence[int]]) -> PatchOutcome:
    """Answer ``facts`` with ``model`` while, for fact i, the state at ``hook`` and each token
    index in ``positions[i]`` is replaced by ``donors[i]`` at that index (``donors[i]``: [L_i, d],
    a whole-prompt state of the fact's own length). An empty ``positions[i]`` leaves fact i
    unpatched. Facts are batched by equal prompt length: one forward pass per batch."""
    if len(donors) != len(facts) or len(positions) != len(facts):
        raise ValueError(f"patching {len(facts)} facts needs one donor sequence and one position list per fact "
                         f"(got {len(donors)} and {len(positions)}).")
    def patch(rows, ids, _pos):
        b, n = ids.shape
        mask = torch.zeros(b, n, dtype=torch.bool)
        rep = None
        for j, i in enumerate(rows.tolist()):
            if tuple(donors[i].shape[:1]) != (n,):
                raise ValueError(f"fact {facts[i].fact_id}: donor sequence of length {donors[i].shape[0]} for a "
                                 f"prompt of {n} tokens; donors must come from prompts of the same length.")
            if rep is None:
                rep = torch.zeros(b, n, donors[i].shape[-1])
            idx = torch.as_tensor(list(positions[i]), dtype=torch.long)
            mask[j, idx] = True
            rep[j, idx] = donors[i][idx].float()
        if rep is None or not mask.any():
            return None
        mask_d, rep_d = mask.to(ids.device)[..., None], rep.to(ids.device)

        def fn(act, hook=None, m=mask_d, r=rep_d):  # noqa: ARG001 (TransformerLens passes the hook point)
            return torch.where(m, r.to(act.dtype), act)
        return fn
    return _answer_first_tokens(model, tokenizer, facts, "last", hook, patch)
