"""interference: why SFT makes a language model forget what it knew (see README.md).

The public API, for notebooks and scripts::

    import interference as itf
    run = itf.fine_tune(itf.FinetuneConfig.quick(method="sft"), "runs/example")
    base, final = itf.FactOutcomes.base_and_final(run.timeline(), "stability")
    print(itf.forgetting_rate(base, final))

Each name below is the library's own function or class (one implementation, documented where
it lives), imported on first use: ``import interference`` loads no torch, so a command's
``--help`` stays fast. No name is also the name of a submodule (``interference.finetune`` and
``interference.run_hypothesis`` are the CLIs), so ``from interference import X`` means one thing.

Importing the package first sets the OpenMP wait policy (``interference.threads``), which only
takes effect if it happens before torch loads.
"""
from __future__ import annotations

import importlib

from interference import threads as _threads  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)

# name -> module that defines it
_API = {
    # the world and its bases
    "WorldConfig": "interference.world",
    "World": "interference.world",
    "BaseSpec": "interference.bases",
    "base_dir": "interference.bases",
    "base_model": "interference.pretrain",  # find or pre-train: (model, tokenizer, world, dir)
    "load_model": "interference.models",
    # fine-tuning: a run directory, or a run held in memory
    "FinetuneConfig": "interference.train",
    "fine_tune": ("interference.train", "finetune"),  # not "finetune": that name is the CLI module
    "load_run": "interference.train",
    "SFTSpec": "interference.train",
    "finetune_on": "interference.train",
    "methods": "interference.methods",  # get_method, METHODS
    # per-fact outcomes and forgetting
    "score_facts": "interference.evaluate",
    "FactOutcomes": "interference.records",
    "forgetting_rate": "interference.metrics.forgetting",
    # activations
    "capture": "interference.probes",
    "hooks": "interference.hooks",  # TransformerLens hook names: resid_post(i), mlp_out(i), ...
    # hypotheses, forecast, one fact
    "verdict": ("interference.hypotheses.runner", "run"),  # not "run_hypothesis": that is the CLI module
    "forecast_run": "interference.forecast.api",
    "fact_report": "interference.report",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'interference' has no attribute {name!r}")
    where, attr = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
    module = importlib.import_module(where)
    value = module if module.__name__.endswith("." + attr) else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
