"""Pre-training to a criterion that scales with the world: memorise, then consolidate.

Why not a fixed step count: the QA format reaches statement-only facts only well past the point
where the statements are memorised, and that point moves with the world's size. A fixed 3000
steps left a 1,500-entity world at known QA 0.82 while the 1,200-entity default reached 0.97, so
"how consolidated the base's knowledge is" depended on the world by accident, and with it which
hypothesis won. Here the schedule is warm-up -> constant learning rate until the statements are
memorised (statement accuracy >= ``memorised_at`` at step m) -> ``consolidation * m`` more steps
with a cosine decay (warm-up / stable / decay). The same ``consolidation`` then means the same
amount of training past memorisation on any world, and several levels of it are bases of their
own (an axis of the hypothesis grids: fragile vs well consolidated knowledge).

The rule is a small stop rule the training loop consults. The learning-rate schedule itself is the
loop's one warm-up + cosine, cut into two phases (``pretrain.phase_loop_config``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class ConsolidationRule:
    """Decides m (the memorisation step) from statement accuracies and the total length from it.

    ``observe(step, acc)`` is called at every check; the first step with ``acc >= memorised_at``
    is m. If m is not reached by ``cap`` steps, m = cap and ``memorised`` stays False (reported,
    never hidden). Then the run lasts ``m + round(consolidation * m)`` steps.
    """
    consolidation: float
    memorised_at: float = 0.97
    cap: int = 20_000
    memorised_step: int | None = None
    memorised: bool = False
    # A fixed memorisation length: m is this step whatever the accuracy reads, and ``memorised``
    # records whether the statements met ``memorised_at`` by then. Why: statement accuracy creeps
    # towards the threshold over thousands of steps, so where it first crosses moves by whole check
    # intervals with float noise (one default spec memorised at 1,250, 1,500 and 2,250 on three
    # machines); a length fixed by the config is the same on every machine.
    fixed_step: int | None = None

    def __post_init__(self) -> None:
        if not (self.consolidation >= 0 and math.isfinite(self.consolidation)):
            raise ValueError(f"consolidation={self.consolidation} must be a finite number >= 0 (multiples of the "
                             "memorisation time trained after it).")
        if self.fixed_step is not None and self.fixed_step < 1:
            raise ValueError(f"fixed_step={self.fixed_step} must be a positive step count.")
        if not 0 < self.memorised_at <= 1:
            raise ValueError(f"memorised_at={self.memorised_at} must be a statement accuracy in (0, 1].")

    def observe(self, step: int, statement_acc: float) -> None:
        if self.memorised_step is not None:
            return
        if self.fixed_step is not None:
            if step >= self.fixed_step:
                self.memorised_step, self.memorised = step, statement_acc >= self.memorised_at
            return
        if statement_acc >= self.memorised_at:
            self.memorised_step, self.memorised = step, True
        elif step >= self.cap:
            self.memorised_step = step

    @property
    def decay_steps(self) -> int | None:
        return None if self.memorised_step is None else round(self.consolidation * self.memorised_step)

    @property
    def total_steps(self) -> int | None:
        return None if self.memorised_step is None else self.memorised_step + self.decay_steps

    def done(self, step: int) -> bool:
        return self.total_steps is not None and step >= self.total_steps

    def state(self) -> dict:
        return {"memorised_step": self.memorised_step, "memorised": self.memorised}

    def load(self, state: dict) -> None:
        self.memorised_step, self.memorised = state.get("memorised_step"), bool(state.get("memorised", False))


MEMORISED_FILE = "memorised.json"  # the rule's state beside the memorised checkpoint


class UntilMemorised:
    """Loop callback of phase 1: every ``every`` updates, score the statements; at memorisation
    (or at the cap) save the state every consolidation level starts from, under ``memo``, and stop.

    ``score()`` returns the statement accuracy of the current model; ``extra()`` the loop-external
    state to store with the checkpoint (the history of probe rows).
    """

    def __init__(self, rule: ConsolidationRule, score, every: int, memo, extra):
        from pathlib import Path
        self.rule, self.score, self.every, self.memo, self.extra = rule, score, every, Path(memo), extra

    def _check(self, state) -> None:
        if self.rule.memorised_step is not None:
            return
        was = state.model.training
        state.model.eval()
        self.rule.observe(state.step, self.score())
        state.model.train(was)
        if self.rule.memorised_step is not None:
            self._save(state)
            state.stop = True

    def _save(self, state) -> None:
        from interference.checkpoint import save_checkpoint
        from interference.io import atomic_write_json
        save_checkpoint(self.memo / "checkpoint", state.model, state.opt, state.sched, state.step,
                        {**self.extra(), "rule": self.rule.state()})
        atomic_write_json(self.memo / MEMORISED_FILE, self.rule.state())

    def on_step(self, state) -> None:
        if state.step % self.every == 0:
            self._check(state)

    def on_end(self, state) -> None:  # the loop reached the cap: observe() sets m = cap
        self._check(state)


class FromMemorised:
    """Loop callback of phase 2: unless the run resumed from its own checkpoint, start from the
    memorised state under ``memo_checkpoint`` (weights, optimizer, schedule, history)."""

    def __init__(self, memo_checkpoint, history: list):
        from pathlib import Path
        self.root, self.history = Path(memo_checkpoint), history

    def on_start(self, state) -> None:
        if state.resumed:
            return
        from interference.checkpoint import load_checkpoint
        got = load_checkpoint(self.root, state.model, state.opt, state.sched)
        if got is None:
            raise RuntimeError(f"no memorised checkpoint under {self.root}; pre-train phase 1 first.")
        state.step, extra = got
        self.history[:] = list(extra.get("history", []))
        state.resumed = True


def memorised_state(memo) -> dict:
    """The rule's state of a memorised checkpoint (``memo`` = its parent folder), read from the
    checkpoint's own state, which ``latest.json`` seals by checksum: ``memorised.json`` beside it
    is a copy for people, outside that seal, so an edited copy is reported and not used."""
    import json
    import sys
    from pathlib import Path

    from interference.checkpoint import LATEST, _corrupt, _read_state
    memo = Path(memo)
    ck = memo / "checkpoint"
    try:
        latest = json.loads((ck / LATEST).read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        raise _corrupt(ck, f"{LATEST} is missing or not valid JSON") from None
    rule = _read_state(ck, latest).get("extra", {}).get("rule")
    if not isinstance(rule, dict):
        raise _corrupt(ck, "its state holds no memorisation step")
    f = memo / MEMORISED_FILE
    try:
        copy = json.loads(f.read_bytes().decode("utf-8")) if f.exists() else rule
    except (OSError, ValueError):
        copy = None
    if copy != rule:
        print(f"note: {f} disagrees with the memorised checkpoint beside it; using the checkpoint's "
              f"memorisation step {rule.get('memorised_step')}.", file=sys.stderr)
    return rule
