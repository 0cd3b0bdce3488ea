"""The few calls a notebook needs that are not already one function elsewhere.

Everything else of the public API (``import interference``) is the library's own function,
re-exported by name; see ``interference/__init__.py`` for the list.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from interference.bases import BaseSpec


def run_hypothesis(name: str, *, quick: bool = False, seeds: int | None = None, out: str | Path = "runs/hypotheses",
                   device: str | None = None, progress: bool = True) -> dict:
    """Run (or reuse) one pre-registered hypothesis experiment on the synthetic world, exactly as
    ``python -m interference.run_hypothesis NAME`` does, and return its verdict dict (``verdict``,
    ``share`` with its 95% CI over seeds, ``statistics``, ``per_seed``, ``preregistered``).
    Cells are stored under ``out/cells`` and reused, so a second call trains nothing."""
    from interference.hypotheses import HYPOTHESES
    from interference.hypotheses.context import Context
    from interference.models import resolve_device
    from interference.run_hypothesis import run_and_draw
    if name not in HYPOTHESES:
        raise ValueError(f"unknown hypothesis {name!r}; choose one of {', '.join(HYPOTHESES)}.")
    module = HYPOTHESES[name]
    cfg = module.config(quick)
    if seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=seeds)
    ctx = Context(BaseSpec.default(quick=quick), Path(out), device=str(resolve_device(device)), progress=progress)
    return run_and_draw(module, cfg, ctx)
