"""Capacity on one real model: a uuid-key count sweep (the paper's own capacity test needs one model).

    python -m interference.run_hypothesis capacity --model DIR --data DIR --out runs/h-real

Pre-registered experiment (written and committed before any run of it, on any model):

The synthetic ``capacity`` experiment teaches the same uuid-key facts on bases of two widths; a
given model has one width, so here its grid is the *count* axis, as in the paper's sweep of uuid
facts. Per seed and count ``c`` (``counts``: new entities), the new facts are ``c`` uuid-named
entities (``fictitious.uuid_names``: random token strings sharing no piece with any subject
name), each asked every kept relation in that relation's own question, each answer drawn from
the relation's answers: ``c x R`` facts the model cannot know. Three runs of equal steps:

- ``sft``: plain SFT on the new facts;
- ``joint``: the same new facts with ``replay`` mixing the model's Known facts (every kept
  relation, watched ones included, in their zero-shot question: the counterpart of the synthetic
  pre-training corpus) into every batch, one replayed example per new one: the model may rehearse
  what it knew while it learns the new facts;
- ``drift``: Known-only SFT on ``c x R`` HighlyKnown facts no arm watches (all of them when
  fewer), the Known-only control of that count.

Steps: each count gets ``epochs`` passes over its new facts, ``steps(c) = max(min_steps,
ceil(epochs * c * R / batch))``, the same for its three runs: step-matched within a count, and a
larger count is not given fewer passes (the sweep asks what *learning* more facts costs).
Every run is evaluated ``n_evals`` times; it never stops early.

Watched: the real runners' watched facts (``real_world.watched_facts``: asked few-shot with
SliCK's first exemplar set); forgetting = share of those the base answers right that are now
answered wrong (read to the newline, any alias right). The learning rate is the real runners'
(``real_lr``, chosen before the grid for the largest count's budget and facts, or ``--lr``).

Primary endpoint, per seed, the synthetic one on this grid (``endpoints.pooled_persistence``):

    P = sum_c (f_joint - f_drift) / sum_c (f_sft - f_drift)    at the step-matched point

95% t-interval over seeds.

Predictions. capacity: P >= 0.5, and the excess forgetting f_sft - f_drift rises with the count
(slope per doubling > 0): a model without room for old and new facts cannot keep the old ones by
rehearsing them. behavior_cloning: P < 0.1 (rehearsal keeps the old facts; what forgets them is
what SFT teaches, which needs no room). localized: P < 0.1 and little excess forgetting at any
count (uuid keys share nothing with the watched facts).

Rule (``PREREGISTERED``): main_driver if lo >= 0.5; contributes if lo > 0; not_supported if
hi < 0.1; else inconclusive. Required check: in every sft and joint cell the new facts are
learned at the step-matched point (mean plasticity >= 0.95 over seeds); otherwise a positive
verdict becomes inconclusive. A finished grid in which any run forgot half the watched facts is
refused as a destroyed model (``real_lr``), as in the other real runners.

Secondary, not deciding: per count, the excess forgetting f_sft - f_drift, f_joint - f_drift and
each arm's forgetting, plasticity, learned step and confident wrong answers, with 95% CIs over
seeds; the slope of excess forgetting per doubling of the count (and per doubling of new facts
per parameter, the synthetic ``slope_load``); the learning-matched P.

Defaults, fixed before any run: 3 seeds (the synthetic design's 5 cost 45 runs per count grid
on a shared 2-core CPU; a GPU user passes ``--seeds 5``), counts 8 / 32 / 128 entities (x 4
relations on the test fixture: 32 / 128 / 512 facts), 10 epochs, at least 50 steps, batch 32, 10
evaluations. ``--counts`` sets another sweep (e.g. up to 250000 entities on EntityQuestions).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from interference.hypotheses.prereg import Preregistration
from interference.train import SFTSpec

NAME = "capacity"
ENDPOINT = ("P = sum over counts of (f_joint - f_drift) / sum of (f_sft - f_drift) on one real model, forgetting "
            "of the base-known watched facts (few-shot, read to the newline) after the same number of steps "
            "within a count; f_sft: plain SFT on c uuid-named entities x every kept relation, f_joint: the same "
            "with the model's Known facts replayed 1:1, f_drift: Known-only SFT on as many HighlyKnown unwatched "
            "facts; counts each trained the same number of epochs; mean and 95% t-interval over seeds")
PREREGISTERED = Preregistration(
    endpoint=ENDPOINT,
    predictions={
        "capacity": "P >= 0.5, and excess forgetting (f_sft - f_drift) rises with the count (slope per doubling "
                    "> 0): without room for old and new facts, rehearsal cannot keep the old ones",
        "behavior_cloning": "P < 0.1: rehearsal keeps the old facts; what SFT teaches needs no room",
        "localized": "P < 0.1 and little excess forgetting at any count: uuid keys share nothing with the "
                     "watched facts",
    },
    rule="main_driver if lo >= 0.5; contributes if lo > 0; not_supported if hi < 0.1; else inconclusive. "
         "Required check: mean plasticity >= 0.95 at the step-matched point in every sft and joint cell, "
         "else a positive verdict is inconclusive.",
    main_at=0.5, negligible_below=0.1)
ARMS = ("sft", "joint", "drift")
LEARNED_AT = 0.95


@dataclass(frozen=True)
class SweepConfig:
    seeds: int = 3
    counts: tuple[int, ...] = (8, 32, 128)  # new uuid entities, each asked every kept relation
    epochs: int = 10  # passes over a count's new facts: steps(c) = max(min_steps, ceil(epochs * facts / batch))
    min_steps: int = 50
    n_evals: int = 10  # evaluations per run (plus step 0)
    sft: SFTSpec = SFTSpec(batch_size=32)
    replay_ratio: float = 1.0  # replayed Known facts per new-fact example (joint)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def quick(cls) -> "SweepConfig":
        return cls(seeds=2, counts=(2, 8), epochs=10, min_steps=20, n_evals=4, sft=SFTSpec(batch_size=8))
