"""The few calls a notebook needs that are not already one function elsewhere.

Everything else of the public API (``import interference``) is the library's own function,
re-exported by name; see ``interference/__init__.py`` for the list.
"""
from __future__ import annotations

from pathlib import Path

from interference.hypotheses.runner import run


def run_hypothesis(name: str, *, quick: bool = False, seeds: int | None = None, out: str | Path = "runs/hypotheses",
                   device: str | None = None, progress: bool = True) -> dict:
    """Run (or reuse) one pre-registered hypothesis experiment on the synthetic world, exactly as
    ``python -m interference.run_hypothesis NAME`` does, and return its verdict dict (``verdict``,
    ``share`` with its 95% CI over seeds, ``statistics``, ``per_seed``, ``preregistered``).
    Cells are stored under ``out/cells`` and reused, so a second call trains nothing."""
    return run(name, quick=quick, seeds=seeds, out=out, device=device, progress=progress)
