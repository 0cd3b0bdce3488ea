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


def patch_forgotten(base, ft, tok, watch: Sequence[Fact], seed: int, n_layers: int) -> dict:
    """Patch base subject-last-token states into ``ft`` on every fact the base got right and ``ft``
    gets wrong: the fact's own state and, as control, another entity's (same relation, same prompt
    length, another answer), at ``blocks.{i}.hook_resid_post`` for every layer."""
    from interference.metrics.patching import control_donor_index, patched_answers, resid_hook
    from interference.probes import capture
    b = patched_answers(base, tok, watch, None).correct
    now = patched_answers(ft, tok, watch, None).correct
    lost = np.where(b & ~now)[0]
    out = {"fact_ids": [watch[i].fact_id for i in lost], "own": {}, "control": {}}
    if lost.size == 0:
        return out
    facts = [watch[i] for i in lost]
    hooks = [resid_hook(layer) for layer in range(n_layers)]
    states = capture(base, tok, watch, hooks, "subject_last")
    ctrl = np.array(control_donor_index(facts, tok, seed=seed, pool=watch))
    usable = ctrl >= 0
    out["control_usable"] = "".join("1" if x else "0" for x in usable)
    for layer, h in enumerate(hooks):
        own = patched_answers(ft, tok, facts, h, states[h][lost])
        c = patched_answers(ft, tok, facts, h, states[h][np.where(usable, ctrl, lost)])
        out["own"][str(layer)] = "".join("1" if x else "0" for x in own.correct)
        out["control"][str(layer)] = "".join("1" if x and u else "0" for x, u in zip(c.correct, usable))
    return out
