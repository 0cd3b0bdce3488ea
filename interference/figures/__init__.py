"""The paper's figures on our world, one registry entry per figure.

    python -m interference.figures --quick            # every figure, tiny world (minutes)
    python -m interference.figures --only curves      # one figure, default world
    python -m interference.figures --list             # names, paper counterparts

A ``Figure`` pairs a typed config (``interference/figures/configs/<name>.json``), a ``compute`` step that
turns cached runs or another command's saved results into a small JSON data dict, and a ``plot``
step that draws PNG + PDF from that dict alone. The data dict is saved under ``<out>/data/`` and
reused while the config is unchanged, so re-drawing never touches a model; tests render every
plot from a hand-written data dict.

The registry lives in ``interference.figures.registry`` and is imported on first use of a name
below: its compute and plot modules load torch and matplotlib, and ``python -m
interference.figures --help`` must not wait for them.
"""
from __future__ import annotations

__all__ = ["FIGURES", "Figure", "FigureContext", "MissingInput", "planned_runs"]


def __getattr__(name: str):
    if name in __all__:
        from interference.figures import registry
        return getattr(registry, name)
    raise AttributeError(name)
