"""The three pre-registered hypothesis designs, by name.

Each design is a module with ``NAME``, ``PREREGISTERED`` (``prereg.Preregistration``), a config,
``cells(cfg, ctx)`` and ``summarize(cfg, results, ctx)``; ``runner.run_module`` runs any of them.
"""
from interference.hypotheses import (aimed_replay, bc_contrast, bc_self, behavior_cloning, capacity, count_sweep,
                                     culprits, decomposition, localized)

HYPOTHESES = {m.NAME: m for m in (capacity, behavior_cloning, localized)}
# Designs run by name but not by ``all`` (whose summary is the three hypotheses' shares):
# culprits, the per-fact removal test of localized interference, and decomposition, the three
# hypotheses' shares of one excess forgetting at several widths (its own verdict per width); and
# aimed_replay, the fix the forecast aims (replaying the at-risk facts), against random and fragile;
# bc_contrast, behavior cloning's share of the same excess with an idk arm that cannot learn
# "abstain unless this entity's QA was trained"; capacity_sweep, capacity's uuid-key count sweep
# on one pinned width (the real-model sweep's design); bc_self, behavior cloning's share of the same
# excess from an arm that teaches the behaviour (answering Unknown questions) without new content.
EXPERIMENTS = {**HYPOTHESES, culprits.NAME: culprits, decomposition.NAME: decomposition,
               aimed_replay.NAME: aimed_replay, bc_contrast.NAME: bc_contrast, bc_self.NAME: bc_self,
               count_sweep.NAME: count_sweep}
