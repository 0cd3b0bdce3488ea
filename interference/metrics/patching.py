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
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from interference.hooks import resid_post
from interference.data import Fact
from interference.models import model_device
from interference.probes import plan_capture
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
    dev = model_device(model)
    gold = _gold_first_token(tokenizer, facts).to(dev)
    plan = plan_capture(tokenizer, facts, [position])
    correct = np.zeros(len(facts), bool)
    lp = np.full(len(facts), math.nan)
    was = model.training
    model.eval()
    try:
        for rows, ids, pos in plan.batches:
            ids, pos, rows_d = ids.to(dev), pos[:, 0].to(dev), rows.to(dev)
            if hook is None:
                logits = model(ids)
            else:
                d = donor[rows].to(dev, dtype=torch.float32)

                def fn(act, hook=None, d=d, pos=pos):  # noqa: ARG001 (TransformerLens passes the hook point)
                    act = act.clone()
                    act[torch.arange(act.shape[0], device=act.device), pos] = d.to(act.dtype)
                    return act
                logits = model.run_with_hooks(ids, fwd_hooks=[(hook, fn)])
            logits = logits if isinstance(logits, torch.Tensor) else logits.logits
            last = logits[:, -1].float().log_softmax(-1)
            g = gold[rows_d]
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
