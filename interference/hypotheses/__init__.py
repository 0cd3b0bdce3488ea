"""The three pre-registered hypothesis designs, by name.

Each design is a module with ``NAME``, ``PREREGISTERED`` (``prereg.Preregistration``), a config,
``cells(cfg, ctx)`` and ``summarize(cfg, results, ctx)``; ``runner.run_module`` runs any of them.
"""
from interference.hypotheses import behavior_cloning, capacity, localized

HYPOTHESES = {m.NAME: m for m in (capacity, behavior_cloning, localized)}
