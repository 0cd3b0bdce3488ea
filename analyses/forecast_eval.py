"""Evaluate the a-priori forgetting forecast (issue 10) and save the numbers the README quotes.

    python analyses/forecast_eval.py                  # default world, SFT, 5 seeds (+ methods, held-out world)
    python analyses/forecast_eval.py --quick          # quick world, 3 seeds (seconds; fits quick_combiner.json)

Writes ``analyses/results/forecast/``:
- ``forecast.json``: the pre-registered evaluation (see ``interference.forecast.evaluate``):
  AUROC / average precision / precision at the top 5% per predictor, mean and 95% CI over
  held-out seeds, forecast - fragility, calibration, single-feature AUROCs, combiner weights;
  ``noise_ceiling``: how well one SFT run's forgetting predicts another run's on the *same* SFT
  set with another training order (the ceiling any a-priori forecast faces); the held-out world.
- ``methods/forecast.json``: SFT vs self-distillation vs freezing (attention only), 3 seeds each:
  each method's own forecast, and each method's forecast scored on the others' forgetting.
- ``per_fact.jsonl``: per held-out seed and fact, the outcome and every predictor's score (ROC curves).
- ``calibration.png``, ``forecast.md`` (the table, and the pre-registered variants of
  ``variants.json`` when ``analyses/forecast_variants.py`` wrote it), ``combiner_sft.json``.
The fitted default-world combiner is copied to ``interference/forecast/default_combiner.json``
(``quick_combiner.json`` with --quick), which the CLI uses.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from interference.forecast.evaluate import EvalConfig, evaluate  # noqa: E402
from interference.io import atomic_write_json as write_json  # noqa: E402


def heldout_base() -> str | None:
    """The cached default-recipe base of the held-out world (``analyses/worlds/heldout.json``): the
    default spec with that world, found by its hash. (Picking any cached base with 6 relations and
    60 values, as this once did, took a d64 or a differently consolidated base once the hypothesis
    grids had cached those too.)"""
    import dataclasses
    from interference.bases import BaseSpec, base_dir
    from interference.world import WorldConfig
    spec = dataclasses.replace(BaseSpec.default(), world=WorldConfig.load(ROOT / "analyses" / "worlds" / "heldout.json"))
    d = base_dir(spec)
    return str(d) if (d / "slick.jsonl").exists() and (d / "model.safetensors").exists() else None


def noise_ceiling(root: Path, ceiling_root: Path) -> dict:
    """Runs on seed 0's SFT set with training orders 1 and 2: does one run's forgetting predict the
    other's (and seed 0's)? A binary oracle from a sibling run bounds what any forecast can do."""
    from interference.forecast.runs import forgotten_labels, run_config
    from interference.metrics.stats import auroc
    from interference.runs import RunStore
    import dataclasses
    runs = {0: RunStore(root).path(run_config("sft", 0))}
    store = RunStore(ceiling_root)
    for order in (1, 2):  # the same SFT facts (data seed 0) in another training order
        runs[order] = store.get(dataclasses.replace(run_config("sft", 0), seed=order)).out
    labels = {k: forgotten_labels(v) for k, v in runs.items()}
    common = sorted(set.intersection(*(set(v) for v in labels.values())))
    y = {k: np.array([labels[k][f] for f in common]) for k in labels}
    pairs = [(a, b) for a in y for b in y if a != b]
    jacc = [float((y[a] & y[b]).sum() / max(1, (y[a] | y[b]).sum())) for a, b in pairs if a < b]
    mean_other = {k: np.mean([y[j] for j in y if j != k], 0) for k in y}
    return {"n_facts": len(common), "forgotten": {str(k): int(v.sum()) for k, v in y.items()},
            "auroc_sibling_run_binary": float(np.mean([auroc(y[b].astype(float), y[a]) for a, b in pairs])),
            "auroc_mean_of_two_siblings": float(np.mean([auroc(mean_other[k], y[k]) for k in y])),
            "jaccard_forgotten_sets": float(np.mean(jacc)),
            "note": "same SFT facts (data seed 0), training orders 0, 1, 2; the forecast never sees the run"}


def markdown(res: dict) -> str:
    t = res["methods"]["sft"]["table"]
    lines = [f"{'Quick' if res['config']['quick'] else 'Default'} world, SFT at 50% Unknown, {res['config']['seeds']} seeds, combiner fitted on the other seeds "
             "(leave-one-seed-out); mean [95% CI] over held-out seeds.", "",
             "| predictor | AUROC | average precision | precision at top 5% |", "|---|---|---|---|"]
    fmt = lambda e: f"{e['mean']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"  # noqa: E731
    for p in list(res["auroc"]) + list(res.get("auroc_extra", {})):
        lines.append(f"| {p} | {fmt(t['auroc'][p])} | {fmt(t['average_precision'][p])} | {fmt(t['precision_at_top'][p])} |")
    d = res["forecast_minus_fragility"]
    lines += ["", f"Forecast - fragility AUROC: {fmt(d)}. Base rate of forgetting: {fmt(t['base_rate']['forecast'])}. "
              f"Goal (AUROC >= 0.9 and >= 0.05 above fragility): {'met' if res['goal_met'] else 'not met'}."]
    if "noise_ceiling" in res:
        c = res["noise_ceiling"]
        lines.append(f"Noise ceiling (same SFT set, other training orders): a sibling run's forgetting predicts a run's "
                     f"with AUROC {c['auroc_sibling_run_binary']:.3f} (two siblings averaged: {c['auroc_mean_of_two_siblings']:.3f}).")
    h = res.get("heldout_world")
    if isinstance(h, dict) and "auroc" in h:
        lines.append(f"Held-out world ({h['seeds']} seeds, combiner fitted on the default world only): forecast AUROC "
                     f"{fmt(h['auroc']['forecast'])}, fragility {fmt(h['auroc']['fragility'])}.")
    elif h:
        lines.append(f"Held-out world: {h}")
    v = res.get("variants")
    if v:  # analyses/forecast_variants.py: every pre-registered variant, not only the primary
        lines += ["", f"Pre-registered variants (docs/forecast_preregistration.md), seeds {v['seeds']}, leave-one-seed-out; "
                      f"fragility {fmt(v['fragility']['auroc'])}:", "",
                  "| variant | features | combiner | AUROC | minus fragility |", "|---|---|---|---|---|"]
        for name, r in v["variants"].items():
            comb = r["combiner"] + (f", C = {r['C']:g}" if r.get("C") is not None else "")
            lines.append(f"| {name} | {r['n_features']} | {comb} | {fmt(r['auroc'])} | {fmt(r['minus_fragility'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--no-methods", action="store_true")
    ap.add_argument("--no-heldout", action="store_true")
    ap.add_argument("--runs", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    quick = args.quick
    out = Path(args.out or (ROOT / "analyses" / "results" / ("forecast_quick" if quick else "forecast")))
    root = Path(args.runs or (ROOT / "runs" / "forecast" / ("quick" if quick else "default")))
    seeds = args.seeds or (3 if quick else 5)
    heldout = None
    if not quick and not args.no_heldout:
        hb = heldout_base()
        heldout = {"base_dir": hb, "seeds": 3} if hb else None
    res = evaluate(EvalConfig(seeds=seeds, methods=("sft",), quick=quick), root, out, heldout=heldout)
    if not quick and not args.no_heldout and heldout is None:
        res["heldout_world"] = ("not run: no base for a world with 6 relations and 60 values was in the shared cache "
                                "when this evaluation ran")
    if not quick:
        res["noise_ceiling"] = noise_ceiling(root, root.parent / "ceiling")
    if (out / "variants.json").exists():  # written by analyses/forecast_variants.py on the same seeds
        res["variants"] = json.loads((out / "variants.json").read_text())
    write_json(out / "forecast.json", res)
    (out / "forecast.md").write_text(markdown(res))
    if not quick:  # the README's <!-- FORECAST --> section (analyses/update_readme.py)
        (out.parent / "forecast.md").write_text(markdown(res))
    shutil.copy(out / "combiner_sft.json", ROOT / "interference" / "forecast" /
                ("quick_combiner.json" if quick else "default_combiner.json"))
    print(markdown(res))
    if not quick and not args.no_methods:
        m = evaluate(EvalConfig(seeds=3, methods=("sft", "self_distill", "freeze")), root, out / "methods")
        for meth in ("self_distill", "freeze"):
            shutil.copy(out / "methods" / f"combiner_{meth}.json",
                        ROOT / "interference" / "forecast" / f"default_combiner_{meth}.json")
        print({k: v["table"]["auroc"]["forecast"] for k, v in m["methods"].items()}, m.get("cross_method"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
