"""The two heavy steps of one localized arm: training it (read at equal learning and at equal steps)
and patching its forgotten facts. Kept apart from ``localized`` so that module stays the
pre-registered design and this one the machinery."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from interference.callbacks import WhenLearned
from interference.data import Fact
from interference.train import finetune_on
from interference.evaluate import outcomes


@dataclass
class ArmRun:
    model: object  # the fine-tuned model at the last step
    reads: dict = field(default_factory=dict)  # "learned" / "final" -> {step, plasticity, correct, predictions}


def _read(model, tok, watch, step: int, plasticity: float, score=None) -> dict:
    ok, preds = outcomes(model, tok, watch, score)  # None: evaluate.score_facts
    return {"step": int(step), "plasticity": float(plasticity), "correct": "".join("1" if x else "0" for x in ok),
            "predictions": preds}


def train_arm(ctx, cfg, arm, train: Sequence[Fact], watch: Sequence[Fact], seed: int) -> ArmRun:
    """Train ``cfg.steps`` steps on ``train`` with the arm's method (one run of the shared loop);
    read the watched facts at the first evaluation with plasticity >= ``cfg.sft.learned_at``
    ("learned"; None if never) and at the last step ("final")."""
    import torch
    from interference.batching import answer_token_accuracy, pack
    from interference.models import model_logits
    model, tok = ctx.base()
    at = cfg.sft.learned_at
    spec = dataclasses.replace(cfg.sft, seed=seed, max_steps=cfg.steps, learned_at=1.01,  # never stop early
                               method=arm.method, method_options=dict(arm.options))
    packed = pack(tok, [(f.prompt, f.answer) for f in train], int(model.cfg.n_ctx))

    @torch.no_grad()
    def score(m) -> float:
        was = m.training
        m.eval()
        acc = float(answer_token_accuracy(model_logits(m, packed.ids.to(next(m.parameters()).device)),
                                          packed.to(next(m.parameters()).device)).float().mean())
        m.train(was)
        return acc

    read_with = getattr(ctx, "score", None)
    reader = WhenLearned(score, at, stop=False, on_learned=lambda m, step, p: _read(m, tok, watch, step, p, read_with))
    teacher = ctx.teacher(cfg.sft.teacher_recipe()) if arm.method == "self_distill" else None
    res = finetune_on(model, tok, train, spec, teacher=teacher, world=ctx.world, callbacks=[reader],
                      dist=ctx.dist)  # a real model's context sets its precision
    return ArmRun(res.model, {"learned": reader.read,
                              "final": _read(res.model, tok, watch, res.steps, res.plasticity, read_with)})


def patch_forgotten(base, ft, tok, watch: Sequence[Fact], seed: int, n_layers: int,
                    keep: Sequence[int] | None = None) -> dict:
    """Patch base states into ``ft`` on every fact the base got right and ``ft`` gets wrong: the
    fact's own state and two controls, another entity's state (same relation, same prompt length,
    another answer) and the mean state of the other entities of that relation and prompt length.

    At the embedding output and after every block (``patching.patch_hooks``), at each of the
    ``patching.POSITION_SETS`` (``keep``: the arm's kept name positions, so ``shared`` is the
    tokens the fact's look-alike shares; None or () leaves it out as not applicable). Stored as
    one bit string per (set, donor, layer) under ``sets``; ``own`` / ``control`` keyed by block
    index are the original subject-last reading at ``blocks.{i}.hook_resid_post``, kept as they were.
    """
    from interference.metrics.patching import (MEAN_MIN_POOL, POSITION_SETS, control_donor_index, layer_label,
                                               patch_hooks, patched_answers, patched_at, position_sets,
                                               sequence_states)
    b = patched_answers(base, tok, watch, None).correct
    now = patched_answers(ft, tok, watch, None).correct
    lost = np.where(b & ~now)[0]
    out = {"fact_ids": [watch[i].fact_id for i in lost], "own": {}, "control": {}}
    if lost.size == 0:
        return out
    facts = [watch[i] for i in lost]
    ctrl = np.array(control_donor_index(facts, tok, seed=seed, pool=watch))
    usable = ctrl >= 0
    hooks = patch_hooks(n_layers)
    states = sequence_states(base, tok, watch, hooks, sorted(set(lost.tolist()) | set(ctrl[usable].tolist())))
    mean_ok = np.array([states.pool(int(i)) >= MEAN_MIN_POOL for i in lost])
    out["control_usable"] = "".join("1" if x else "0" for x in usable)
    out["mean_usable"] = "".join("1" if x else "0" for x in mean_ok)
    out["mean_pool"] = [int(states.pool(int(i))) for i in lost]
    sets = [position_sets(tok, f, keep) for f in facts]
    names = [n for n in POSITION_SETS if any(s[n] for s in sets)]
    out["not_applicable"] = [n for n in POSITION_SETS if n not in names]
    out["set_sizes"] = {n: [len(s[n]) for s in sets] for n in names}
    out["sets"] = {n: {"own": {}, "control": {}, "mean": {}} for n in names}
    bits = lambda c, ok: "".join("1" if x and u else "0" for x, u in zip(c, ok))  # noqa: E731
    for h in hooks:
        lab = layer_label(h)
        own = [states.rows[int(i)][h] for i in lost]
        other = [states.rows[int(c)][h] if u else o for c, u, o in zip(ctrl, usable, own)]
        mean = [states.mean_of(int(i), h) if ok else o for i, ok, o in zip(lost, mean_ok, own)]
        for n in names:
            pos = [s[n] for s in sets]
            rec = out["sets"][n]
            rec["own"][lab] = bits(patched_at(ft, tok, facts, h, own, pos).correct, np.ones(len(facts), bool))
            rec["control"][lab] = bits(patched_at(ft, tok, facts, h, other, pos).correct, usable)
            rec["mean"][lab] = bits(patched_at(ft, tok, facts, h, mean, pos).correct, mean_ok)
    last = out["sets"]["subject_last"]
    for layer in range(n_layers):  # the original reading, under its original keys
        out["own"][str(layer)] = last["own"][f"L{layer}"]
        out["control"][str(layer)] = last["control"][f"L{layer}"]
    return out
