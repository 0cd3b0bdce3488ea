"""The learning rate of a real-model grid, chosen by a rule written before the grid runs.

Why a rule and not a constant: the right rate depends on the model. A rate that suits
Qwen2.5-1.5B (the paper's 1e-5) leaves a 1M-parameter model learning a third of its new facts in
the step budget, and the synthetic grids' rates destroy a real model: at 1e-2 every arm forgot
95-98% of the watched facts while the learning check passed. Either way the runner reported
``inconclusive`` and nothing said why.

Rule (``RULE``), run once per (model, data, hypothesis settings) and cached beside the SliCK
table: for each candidate rate from the largest down, fine-tune the base for the grid's step budget

1. on Known facts only (HighlyKnown facts that are not watched; as many as the grid's new facts),
   and read the watched facts the base answers right: the *Known-only drift* is the share lost;
2. if the drift is below ``DRIFT_BOUND``, on new facts (uuid-named entities of the kept relations,
   values drawn from their answers): *learned* when at least ``learned_at`` of them are answered.

The chosen rate is the first (largest) whose drift is below the bound; if the new facts are not
learned there, no candidate does both (a smaller rate learns less) and the run is refused with
one sentence. ``--lr`` skips the sweep but its Known-only drift is still measured and recorded.

Destroyed: a rate whose Known-only drift is at least ``DESTROYED`` (half the watched knowledge
gone by SFT on facts the model already knows) cannot support any reading of forgetting; such a
run is refused, as is a finished grid in which any arm forgets that much (abstentions not
counted: the idk arm is designed to teach them, and on the fixture it made 87% of the watched
facts abstain at a rate whose Known-only drift was 1%).
"""
from __future__ import annotations

import dataclasses
import json
import random
from typing import Sequence

from interference.data import Fact
from interference.io import atomic_write_json, config_hash

CANDIDATES = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
DRIFT_BOUND = 0.05  # Known-only SFT may cost at most 5% of the watched facts the base knows
DESTROYED = 0.5  # half the watched knowledge gone: nothing about forgetting can be read any more
N_SWEEP_WATCH = 200  # watched facts read in the sweep (a 95% CI of about +-3 points at 5%)
RULE = (f"largest of {list(CANDIDATES)} at which Known-only SFT (the grid's step budget) loses < {DRIFT_BOUND:.0%} "
        "of the base-known watched facts, provided new uuid facts reach the learning criterion there; refused if "
        f"none; refused as destroyed if Known-only drift (or any arm's watched forgetting) >= {DESTROYED:.0%}")


class LearningRateError(ValueError):
    """No rate fits the rule, or the given one destroys the model; one sentence."""


def _forgetting(ctx, model, watch: Sequence[Fact], base_ok: list[bool]) -> float:
    tok = ctx.base()[1]
    now = [r.correct for r in ctx.score(model, tok, watch)]
    known = [n for b, n in zip(base_ok, now) if b]
    return sum(not n for n in known) / len(known) if known else float("nan")


def _learned(ctx, model, train: Sequence[Fact]) -> float:
    tok = ctx.base()[1]
    return sum(r.correct for r in ctx.score(model, tok, train)) / len(train)


def _try(ctx, spec, lr: float, steps: int, known: Sequence[Fact], new: Sequence[Fact], watch, base_ok,
         learned_at: float, check_learning: bool) -> dict:
    from interference.hypotheses.arms import fixed_steps
    from interference.train import finetune_on
    model, tok = ctx.base()
    run = fixed_steps(dataclasses.replace(spec, lr=lr, method="sft", method_options={}), steps, seed=0)
    k = finetune_on(model, tok, list(known), run, world=ctx.world, dist=ctx.dist)
    row = {"lr": lr, "known_only_drift": round(_forgetting(ctx, k.model, watch, base_ok), 4)}
    del k
    if check_learning and row["known_only_drift"] < DRIFT_BOUND:
        n = finetune_on(model, tok, list(new), run, world=ctx.world, dist=ctx.dist)
        row["new_learned"] = round(_learned(ctx, n.model, new), 4)
    return row


def choose_lr(ctx, spec, steps: int, n_new: int, learned_at: float, given: float | None = None) -> dict:
    """The record of the rule (``RULE``): {value, chosen_by, rule, sweep: [{lr, known_only_drift,
    new_learned}], bound}; cached under the SliCK table's directory. Raises ``LearningRateError``."""
    known = sweep_known_facts(ctx, n_new)
    new = sweep_new_facts(ctx, n_new)
    watch = sorted(random.Random("lr-sweep").sample(ctx.watch, min(N_SWEEP_WATCH, len(ctx.watch))),
                   key=lambda f: f.fact_id)
    key = config_hash({"base": ctx.spec.hash(), "spec": spec.to_dict(), "steps": steps, "n_new": n_new,
                       "learned_at": learned_at, "given": given, "rule": RULE,
                       "facts": [[f.fact_id, f.answer] for f in known + new + watch]})
    f = ctx.slick_dir / "lr" / f"{key}.json"
    if f.is_file():
        try:
            rec = json.loads(f.read_text())
            if rec.get("key") == key:
                return _refuse_if_destroyed(rec)
        except json.JSONDecodeError:
            pass  # a damaged record is recomputed, never read
    base_ok = [r.correct for r in ctx.score(ctx.base()[0], ctx.base()[1], watch)]
    sweep, value = [], given
    for lr in ([given] if given is not None else CANDIDATES):
        row = _try(ctx, spec, lr, steps, known, new, watch, base_ok, learned_at, check_learning=given is None)
        sweep.append(row)
        if given is None and row["known_only_drift"] < DRIFT_BOUND:
            value = lr
            break
    rec = {"key": key, "value": value, "chosen_by": "--lr" if given is not None else "rule", "rule": RULE,
           "bound": DRIFT_BOUND, "steps": steps, "n_new": n_new, "learned_at": learned_at, "sweep": sweep,
           "known_only_drift": sweep[-1]["known_only_drift"], "n_watch": len(watch), "n_base_known": sum(base_ok)}
    atomic_write_json(f, rec)
    return _refuse_if_destroyed(rec)


def _refuse_if_destroyed(rec: dict) -> dict:
    last = rec["sweep"][-1]
    if rec["chosen_by"] == "--lr":
        if last["known_only_drift"] >= DESTROYED:
            raise LearningRateError(f"at --lr {rec['value']:g} Known-only SFT for {rec['steps']} steps already loses "
                                    f"{last['known_only_drift']:.0%} of the watched facts the base knows, so the model "
                                    "is destroyed before any arm runs; lower --lr.")
        return rec
    if rec["value"] is None:
        raise LearningRateError(f"every learning rate in {list(CANDIDATES)} makes Known-only SFT lose at least "
                                f"{DRIFT_BOUND:.0%} of the watched facts in {rec['steps']} steps; pass a smaller --lr "
                                "or check the model.")
    if last.get("new_learned", 0.0) < rec["learned_at"]:
        raise LearningRateError(f"at lr {rec['value']:g}, the largest rate whose Known-only drift stays below "
                                f"{DRIFT_BOUND:.0%}, the new facts reach only {last.get('new_learned', 0.0):.0%} "
                                f"(< {rec['learned_at']:.0%}) in {rec['steps']} steps; raise the step budget or "
                                "pass --lr to accept the drift.")
    return rec


def refuse_destroyed_arms(forgetting: dict[str, float], lr: float) -> None:
    """After the grid: any arm (mean over seeds) that answers >= ``DESTROYED`` of the watched facts
    the base knew wrongly (abstentions not counted: teaching "I don't know" is the idk arm's design)
    says the model was destroyed, and its verdict is refused, not reported."""
    bad = {a: v for a, v in forgetting.items() if v == v and v >= DESTROYED}
    if bad:
        arm, v = max(bad.items(), key=lambda kv: kv[1])
        raise LearningRateError(f"at lr {lr:g} the {arm} arm answers {v:.0%} of the watched facts the base knew wrongly, so the "
                                "model was destroyed and no verdict is read; lower --lr (the cells stay stored).")


def sweep_known_facts(ctx, n: int) -> list[Fact]:
    """HighlyKnown facts that are not watched, as many as the grid's new facts (cycled if fewer)."""
    pool = ctx.teacher_facts()
    rng = random.Random("lr-sweep-known")
    picked = rng.sample(pool, min(n, len(pool)))
    return (picked * (n // max(1, len(picked)) + 1))[:n]


def sweep_new_facts(ctx, n: int) -> list[Fact]:
    """``n`` new facts: uuid-named entities asked the kept relations, values from their answers."""
    from interference.fictitious import uuid_names
    world, tok = ctx.world, ctx.base()[1]
    rels = list(world.relations)
    names = ctx.memo(("uuid-sweep", n), lambda: uuid_names(tok, world.names, n, seed=99_000))
    rng = random.Random("lr-sweep-new")
    out = []
    for i, name in enumerate(names):
        r = rels[i % len(rels)]
        out.append(world.ask(name, r, rng.choice(world.values[r]), f"fict:lr:{i}:{r}", "uuid"))
    return out
