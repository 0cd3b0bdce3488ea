"""The fine-tuning runs a forecast is scored against: one config per (method, seed), run through
the public ``interference.train.finetune`` API (never a loop of our own), and the per-fact
"forgotten" label read from the run's timeline with ``metrics.forgetting.forgetting_events``.

Seeds: seed ``s`` varies both the SFT facts drawn (``SFTDataConfig.seed``) and the model-side seed
(data order), so leave-one-seed-out scoring never sees the same SFT set or the same order twice.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from interference.sft_data import SFTDataConfig

# Method options per method name: the library defaults (format teacher, lambda 1, T 0.5 for
# self-distillation; attention-only for freezing, the paper's headline contrast).
METHOD_OPTIONS = {"sft": {}, "self_distill": {}, "freeze": {"groups": "attn"}}


def run_config(method: str, seed: int, *, base_dir: str | None = None, quick: bool = False,
               data: SFTDataConfig | None = None, **overrides):
    """The FinetuneConfig of one evaluation run (default world: 50% Unknown, the default data)."""
    from interference.bases import BaseSpec
    from interference.train import FinetuneConfig

    if method not in METHOD_OPTIONS:
        raise ValueError(f"method {method!r} has no forecast; use one of {sorted(METHOD_OPTIONS)}.")
    data = data or (SFTDataConfig.quick() if quick else SFTDataConfig())
    data = dataclasses.replace(data, seed=seed)
    kw = dict(base=BaseSpec.default(quick=quick).to_dict(), base_dir=base_dir, data=data, method=method,
              method_options=dict(METHOD_OPTIONS[method]), seed=seed)
    if quick:
        kw = {**FinetuneConfig.quick().to_dict(), **kw}
    return FinetuneConfig(**{**kw, **overrides})


def run_dir(root: str | Path, method: str, seed: int, **config) -> Path:
    """Where the run of ``run_config(method, seed, **config)`` lives: the run store's name."""
    from interference.runs import run_name
    return Path(root) / run_name(run_config(method, seed, **config))


def forgotten_labels(run_out: str | Path, set_name: str = "stability") -> dict[str, bool]:
    """fact_id -> forgotten (right at step 0 = the base, wrong at the end of SFT) for the facts of
    ``set_name`` the base answered right; facts the base got wrong are absent."""
    from interference.metrics.forgetting import forgetting_events, load_timeline
    return {k: e.forgotten for k, e in forgetting_events(load_timeline(run_out), set_name).items()}
