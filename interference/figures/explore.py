"""The runs the fact explorer notebook opens: the ``curves`` figure's arms, from the figures' own
run cache, so the notebook explores exactly the runs the figures show (and trains only what is
missing). Here, not in ``report``: ``report`` reads any runs it is given and knows no figure.
"""
from __future__ import annotations

from pathlib import Path

from interference.figures.config import REPO, ArmsConfig, load_config
from interference.figures.runs import RunCache


def explorer_runs(quick: bool = True, root: str | Path | None = None, labels=("sft", "self_distill"),
                  seed: int = 0) -> dict:
    """label -> RunRecord of the ``curves`` figure's arms (same configs, same cache as
    ``python -m interference.figures`` run at the repository root)."""
    cfg = load_config(ArmsConfig, "curves", quick)
    arms = {a.label: a for a in cfg.arms}
    missing = [l for l in labels if l not in arms]
    if missing:
        raise ValueError(f"no arm {missing[0]!r} in the curves figure config; choose from {sorted(arms)}.")
    cache = RunCache(root or REPO / ("runs/figures_quick" if quick else "runs/figures"), quick)
    return {l: cache.get(arms[l], seed, cfg.run) for l in labels}
