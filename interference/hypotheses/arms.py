"""One arm of a hypothesis experiment: a fixed-length fine-tuning run through the one loop, with
the per-fact outcomes of the watched (pre-existing) facts recorded at every evaluation.

Why a curve and a fixed length: arms must be compared at equal steps *and* at equal learning.
Every arm of an experiment trains for the same ``max_steps`` (the step-matched read-out is the
last evaluation) and never stops early; the learning-matched read-out is the first evaluation
at which the arm's own training facts are answered as trained at ``learned_at``. One run gives
both, and the cell file holds the whole curve (one character per fact and evaluation), so any
later statistic reads the stored run instead of retraining.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

from interference.data import Fact
from interference.evaluate import accuracy, score_facts
from interference.io import config_hash
from interference.metrics.endpoints import outcome_rates
from interference.metrics.matched import first_crossing
from interference.records import FactOutcomes, encode_outcomes, positional_ids

NEVER_STOP = 1.01  # a learned_at no share reaches: the loop runs all max_steps (step matching)


class OutcomeCurve:
    """Loop callback: at each evaluation (step 0 included), the outcome code of every ``watch``
    fact and the share of ``train`` facts answered as trained (their own labels, so an "I don't
    know" arm counts answering "unknown" as learned); ``extra`` sets get their codes too."""

    def __init__(self, tokenizer, watch: Sequence[Fact], train: Sequence[Fact], extra: dict | None = None,
                 score=score_facts, train_confidence: bool = False):
        self.tok, self.watch, self.train, self.extra = tokenizer, list(watch), list(train), dict(extra or {})
        self.score = score  # a real model's context reads answers to the newline (evaluate.read_facts)
        # opt-in (older cells have no such key): the mean probability of the trained answers, i.e.
        # how confidently the arm has learned to give them, beside the share it gives exactly
        self.train_confidence = train_confidence
        self.rows: list[dict] = []

    def on_eval(self, state) -> None:
        scored = self.score(state.model, self.tok, self.train) if self.train else []
        row = {"step": int(state.step), "plasticity": accuracy(scored) if self.train else math.nan,
               "watch": encode_outcomes(r.outcome for r in self.score(state.model, self.tok, self.watch))}
        if self.train_confidence and scored:
            row["train_p"] = sum(math.exp(r.gold_logprob) for r in scored) / len(scored)
        for name, facts in self.extra.items():
            row[name] = encode_outcomes(r.outcome for r in self.score(state.model, self.tok, facts))
        self.rows.append(row)


def facts_hash(facts: Sequence[Fact]) -> str:
    """Names a fact list (ids and answers, in order), so stored codes are read against their facts."""
    return config_hash([[f.fact_id, f.answer] for f in facts])


def run_arm(ctx, base_spec, train: Sequence[Fact], watch: Sequence[Fact], sft, extra: dict | None = None,
            movement: bool = False) -> dict:
    """Fine-tune the cached base of ``base_spec`` on ``train`` with ``sft`` (an ``SFTSpec``: method,
    steps, seed) and return the JSON-able curve of ``watch`` outcomes. A self-distillation arm gets
    the base's format teacher (``ctx.teacher``, one per base, cached beside it).

    ``movement``: also record how far the weights moved (``update_norm``: L2 norm of fine-tuned
    minus base weights, ``metrics.attribution.update_norms``) and the trained answers' mean
    probability at every evaluation (``train_p``), for designs whose arms start from different
    losses and must show that a smaller effect is not merely a smaller update."""
    from interference.train import finetune_on
    model, tok = ctx.base(base_spec)
    curve = OutcomeCurve(tok, watch, train, extra, score=getattr(ctx, "score", score_facts), train_confidence=movement)
    teacher = ctx.teacher(sft.teacher_recipe(), base_spec) if sft.method == "self_distill" else None
    t0 = time.perf_counter()
    res = finetune_on(model, tok, list(train), sft, teacher=teacher, world=ctx.world, callbacks=[curve],
                      dist=ctx.dist)
    seconds = time.perf_counter() - t0  # evaluations included; a shared CPU's wall time, not a benchmark
    if not curve.rows or curve.rows[0]["step"] != 0:
        raise RuntimeError("the loop did not evaluate the base at step 0; the arm has no baseline.")
    out = {"steps": int(res.steps), "n_train": len(train), "seconds": round(seconds, 3), "watch_hash": facts_hash(watch),
           "extra_hash": {k: facts_hash(v) for k, v in (extra or {}).items()}, "curve": curve.rows}
    if movement:
        from interference.metrics.attribution import update_norms
        out["update_norm"] = update_norms(res.model, model)["total"]
    return out


def step_matched(result: dict, step: int | None = None) -> dict:
    """The curve row at ``step`` (default: the last one, i.e. after all max_steps)."""
    rows = result["curve"]
    if step is None:
        return rows[-1]
    got = [r for r in rows if r["step"] == step]
    if not got:
        raise KeyError(f"the arm has no evaluation at step {step} (evaluated at {[r['step'] for r in rows]}).")
    return got[0]


def learned_step(result: dict, at: float) -> int | None:
    """The arm's learning-matched step: its curve's ``first_crossing`` of ``at`` (None: never)."""
    row = first_crossing(result["curve"], at)
    return None if row is None else int(row["step"])


def rates_at(result: dict, row: dict, key: str = "watch") -> dict:
    """Forgetting / hallucination / abstention among the facts the base got right, at ``row``
    (codes stored in the watch list's order: named by position)."""
    base = result["curve"][0][key]
    ids = positional_ids(len(base))
    return outcome_rates(FactOutcomes.from_codes(ids, base), FactOutcomes.from_codes(ids, row[key]))


def readout(result: dict, learned_at: float) -> dict:
    """Both read-outs of one arm: step-matched (end) and learning-matched (first learned step;
    falls back to the end, flagged, when the arm never reached ``learned_at``)."""
    end = step_matched(result)
    ls = learned_step(result, learned_at)
    lrow = step_matched(result, ls) if ls is not None else end
    return {"end": {**rates_at(result, end), "step": end["step"], "plasticity": end["plasticity"]},
            "learned": {**rates_at(result, lrow), "step": lrow["step"], "plasticity": lrow["plasticity"],
                        "reached": ls is not None}}


def fixed_steps(sft, steps: int, seed: int, **changes):
    """``sft`` set to run exactly ``steps`` updates with ``seed`` (never stopping early)."""
    return dataclasses.replace(sft, max_steps=steps, learned_at=NEVER_STOP, seed=seed, **changes)
