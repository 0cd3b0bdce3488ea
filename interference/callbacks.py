"""Ready-made callbacks of the one training loop (``interference.loop``).

Each does one job a loop used to carry inline: checkpoint and resume, stop once the new facts are
learned, keep activation snapshots in memory. They see the loop's ``LoopState``; fine-tuning's
user callbacks (probes on disk, gradient alignment) see a ``RunContext`` instead and are driven by
``interference.train``'s timeline callback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from interference import checkpoint as _ckpt


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


class StopWhenLearned:
    """At each evaluation, ``score(model)`` (a share in [0, 1]); stop once it reaches ``at``.

    ``last`` holds the latest score: the run's plasticity when the loop ends.
    """

    def __init__(self, score: Callable[[object], float], at: float):
        self.score, self.at = score, at
        self.last = float("nan")
        self.history: list[tuple[int, float]] = []

    def on_eval(self, state) -> None:
        if state.step == 0:
            return  # the base is not asked whether it already knows the new facts
        self.last = float(self.score(state.model))
        self.history.append((state.step, self.last))
        state.postfix["learned"] = f"{self.last:.2f}"
        if self.last >= self.at:
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
