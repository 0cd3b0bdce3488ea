"""Ready-made callbacks of the one training loop (``interference.loop``).

Each does one job a loop used to carry inline: checkpoint and resume, stop once the new facts are
learned, keep activation snapshots in memory. They see the loop's ``LoopState``; fine-tuning's
user callbacks (probes on disk, gradient alignment) see a ``RunContext`` instead and are driven by
``interference.train``'s timeline callback.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Sequence

import torch

from interference import checkpoint as _ckpt
from interference.io import json_line
from interference.metrics.attribution import gradient_alignment
from interference.metrics.matched import is_learned


class Checkpoints:
    """Save a checkpoint every ``every`` updates (not after the last: the caller saves the model)
    and restore the latest one at the start, so an interrupted run resumes bit-identically.

    ``extra()`` returns the loop-external state to store (history, timeline offset); ``restore``
    gets it back on resume. ``resume=False`` ignores an existing checkpoint.
    """

    def __init__(self, root: str | Path, every: int, extra: Callable[[], dict] = dict,
                 restore: Callable[[dict], None] | None = None, resume: bool = True):
        if every < 1:
            raise ValueError(f"checkpoint interval {every} must be a positive step count.")
        self.root, self.every, self.extra, self.restore, self.resume = Path(root), every, extra, restore, resume

    def on_start(self, state) -> None:
        if not self.resume:
            return
        got = _ckpt.load_checkpoint(self.root, state.model, state.opt, state.sched)
        if got is not None:
            state.step, extra = got
            state.resumed = True
            if self.restore is not None:
                self.restore(extra)

    def on_step(self, state) -> None:
        if state.step % self.every == 0 and state.step < state.cfg.steps and not state.stop:
            _ckpt.save_checkpoint(self.root, state.model, state.opt, state.sched, state.step, self.extra())


class WhenLearned:
    """At each evaluation after step 0, ``score(model)`` (a share in [0, 1]); the first time it is
    learned (``metrics.matched.is_learned`` at ``at``), call ``on_learned(model, step, score)``
    and, with ``stop``, end the loop. Without ``stop`` it scores no more once learned (a
    learning-matched read is taken once).

    ``last`` holds the latest score: with ``stop``, the run's plasticity when the loop ends.
    """

    def __init__(self, score: Callable[[object], float], at: float, stop: bool = True,
                 on_learned: Callable[[object, int, float], object] | None = None):
        self.score, self.at, self.stop, self.on_learned = score, at, stop, on_learned
        self.last = float("nan")
        self.history: list[tuple[int, float]] = []
        self.learned_at_step: int | None = None
        self.read = None  # what on_learned returned

    def on_eval(self, state) -> None:
        if state.step == 0:
            return  # the base is not asked whether it already knows the new facts
        if self.learned_at_step is not None and not self.stop:
            return
        self.last = float(self.score(state.model))
        self.history.append((state.step, self.last))
        state.postfix["learned"] = f"{self.last:.2f}"
        if is_learned(self.last, self.at) and self.learned_at_step is None:
            self.learned_at_step = int(state.step)
            if self.on_learned is not None:
                self.read = self.on_learned(state.model, state.step, self.last)
        if self.stop and is_learned(self.last, self.at):
            state.stop = True


class Snapshots:
    """In-memory activations of ``facts`` at ``hooks`` (subject's last token, float16), for drift
    curves: at step 0, at the first evaluation at least ``every`` steps after the previous one,
    at an early stop and at the end. ``snapshots`` maps step -> {hook: [n, d]}."""

    def __init__(self, tokenizer, facts: Sequence, hooks: Sequence[str], every: int = 100,
                 position: str = "subject_last"):
        self.tok, self.facts, self.hooks, self.every, self.position = tokenizer, list(facts), list(hooks), every, position
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def active(self) -> bool:
        return bool(self.facts and self.hooks)

    def _snap(self, state) -> None:
        from interference.probes import capture
        acts = capture(state.model, self.tok, self.facts, self.hooks, self.position)
        self.snapshots[state.step] = {h: v.half() for h, v in acts.items()}

    def on_eval(self, state) -> None:
        if not self.active:
            return
        last = max(self.snapshots, default=None)
        if last is None or state.step - last >= self.every or state.stop:
            self._snap(state)

    def on_end(self, state) -> None:
        if self.active and max(self.snapshots, default=None) != state.step:
            self._snap(state)


# ------------------------------------------------------------------ run callbacks
# Fine-tuning's run callbacks see a ``RunContext`` and the step (``on_eval(ctx, step)``), driven by
# ``interference.train``'s timeline; the loop callbacks above see the loop's ``LoopState``. The
# measurement is a pure metric (``metrics.attribution.gradient_alignment``); writing its rows into
# the run directory is this callback's job, so ``metrics/`` never writes a file.
class GradientAlignmentCallback:
    """Training-loop callback: gradient alignment per unit *along* training.

    Every ``every`` steps (and at step 0) it measures ``gradient_alignment`` between the run's
    new facts (plasticity set) and a fixed sample of ``n_known`` held-out known facts (stability
    set), and appends one JSON row per evaluation to ``<run>/gradient_alignment.jsonl``:
    {step, mean: {unit: cos}, conflict: {unit: share < 0}}. Costs one batched forward+backward
    pass over the new facts and one over the sample (``metrics.gradients``); the products grow with
    ``n_known`` x answer positions, so keep it modest (default 32).
    """

    def __init__(self, every: int = 100, n_known: int = 32, by_layer: bool = True, seed: int = 0):
        self.every, self.n_known, self.by_layer, self.seed = every, n_known, by_layer, seed
        self.rows: list[dict] = []

    def on_eval(self, ctx, step: int) -> None:
        if step % self.every:
            return
        known = list(ctx.data.eval_sets["stability"])
        known = random.Random(self.seed).sample(known, min(self.n_known, len(known)))
        ga = gradient_alignment(ctx.model, ctx.tokenizer, ctx.data.eval_sets["plasticity"], known, self.by_layer)
        row = {"step": step, "mean": ga.mean_by_unit(), "conflict": ga.conflict_by_unit()}
        self.rows.append(row)
        if ctx.out is not None:
            with open(ctx.out / "gradient_alignment.jsonl", "a") as fh:
                fh.write(json_line(row))
