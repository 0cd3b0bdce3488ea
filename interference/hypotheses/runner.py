"""Run one hypothesis module: claim its output directory, run its grid (reusing stored cells),
summarise, and write ``verdict.json`` and ``per_seed.json`` (``run_module``: computes and stores,
never draws). ``run_and_draw`` then draws the verdict's plots beside it (``interference.plots``),
and ``run`` does both for a design by name on the synthetic world: what the CLI, the Python API
and the figures' ``--produce`` all call.

A hypothesis module provides ``NAME``, ``PREREGISTERED`` (``prereg.Preregistration``), a config
with ``to_dict()`` and ``seeds``, ``cells(cfg, ctx) -> [Cell]`` and ``summarize(cfg, results,
ctx) -> dict`` with ``verdict``, ``statistics`` and ``per_seed``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from interference.bases import BaseSpec
from interference.hypotheses.context import Context
from interference.hypotheses.grid import ResultSet, run_grid
from interference.hypotheses.prereg import preregistration_of, with_prereg
from interference.io import atomic_write_json, claim_run_dir, json_ready
from interference.plots import plot_hypothesis
from interference.workers import run_in_workers


def hypothesis_config(module, cfg, ctx) -> dict:
    """What makes an output directory compatible: everything but the settings that only add cells
    (the number of seeds; a module's ``EXTENDABLE`` fields, e.g. decomposition's widths: cells are
    keyed individually), including the pre-registration hash."""
    extendable = set(getattr(module, "EXTENDABLE", ())) | {"seeds"}
    return {"hypothesis": module.NAME, "base": ctx.spec.to_dict(),
            "config": {k: v for k, v in cfg.to_dict().items() if k not in extendable},
            "preregistered": preregistration_of(module).hash()}


def run_module(module, cfg, ctx: Context) -> dict:
    """Claim ``<out>/<name>``, run the grid (reusing stored cells), summarise, write verdict.json
    (with per-seed metrics); return the verdict dict."""
    prereg = preregistration_of(module)
    d = claim_run_dir(ctx.out / module.NAME, hypothesis_config(module, cfg, ctx), what=f"{module.NAME} run")
    cells = with_prereg(module.cells(cfg, ctx), prereg.hash())
    if getattr(ctx, "jobs", 1) > 1:  # workers store the cells; the serial pass below only reads them
        for b in {c.base.hash(): c.base for c in cells if c.base is not None}.values():
            ctx.fingerprint(b)  # every base pre-trained here first: two workers must never train one
        run_in_workers(cells, lambda part: run_grid(part, ctx.cache(), progress=False, desc=module.NAME,
                                                    fingerprint=ctx.fingerprint), ctx.jobs)
    rep = run_grid(cells, ctx.cache(), progress=ctx.progress, desc=module.NAME, fingerprint=ctx.fingerprint)
    v = module.summarize(cfg, ResultSet(cells, rep.results), ctx)
    v["preregistered"] = prereg.record()
    v["seeds"] = cfg.seeds
    v["cells"] = {"computed": rep.computed, "reused": rep.reused, "recomputed_other_weights": rep.stale,
                  "seconds": round(rep.seconds, 1)}
    v["config"] = cfg.to_dict()
    v["base_hash"] = ctx.spec.hash()
    v["base_fingerprints"] = {b.hash(): ctx.fingerprint(b) for b in {c.base.hash(): c.base for c in cells
                                                                      if c.base is not None}.values()}
    v = json_ready(v)  # as verdict.json will read back: a missing statistic is None, also in memory
    atomic_write_json(d / "per_seed.json", v["per_seed"])
    atomic_write_json(d / "verdict.json", v)
    return v


def run_and_draw(module, cfg, ctx) -> dict:
    """``run_module``, then the hypothesis' plots beside its verdict (listed in it)."""
    v = run_module(module, cfg, ctx)
    d = ctx.out / module.NAME
    v["plots"] = [str(p) for p in plot_hypothesis(v, d)]
    atomic_write_json(d / "verdict.json", v)
    return v


def run(name: str, *, quick: bool = False, seeds: int | None = None, out: str | Path = "runs/hypotheses",
        device: str | None = None, progress: bool = True, jobs: int = 1) -> dict:
    """Run (or reuse) one pre-registered design on the synthetic world, as
    ``python -m interference.run_hypothesis NAME`` does, and return its verdict dict (``verdict``,
    ``share`` with its 95% CI over seeds, ``statistics``, ``per_seed``, ``preregistered``).
    Cells are stored under ``out/cells`` and reused, so a second call trains nothing."""
    from interference.hypotheses import EXPERIMENTS  # the registry imports every design module
    from interference.models import resolve_device
    from interference.threads import configure_threads
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown hypothesis {name!r}; choose one of {', '.join(EXPERIMENTS)}.")
    module = EXPERIMENTS[name]
    cfg = module.config(quick)
    if seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=seeds)
    device = str(resolve_device(device))
    configure_threads(device)  # one thread on CPU: see interference.threads
    ctx = Context(BaseSpec.default(quick=quick), Path(out), device=device, progress=progress, jobs=jobs)
    return run_and_draw(module, cfg, ctx)
