"""Why does L2-to-init keep *fewer* held-out facts than plain SFT, and fewer as it gets stronger?

The trade-off figure and the compare-methods table show l2_init, an anchor that resists every
weight change, forgetting more than SFT (weight 0.01), and more again at weight 0.1. An anchor
that makes forgetting worse is either noise (3 seeds) or a mechanism worth knowing.

Written before running (the plan, decision rule included):

- Arms: l2_init at weights 0 (the same code path with no anchor: the SFT control), 0.001, 0.01,
  0.1 and 1; seeds 0-2; the compare-methods data (50% Unknown, 40 epochs, default world).
- Endpoint: forgetting (share of base-known held-out facts wrong at the end), per seed.
- Statistic: each seed's OLS slope of forgetting on log10(weight) over the four positive
  weights; mean and 95% t-interval over seeds.
- Readings: *noise* predicts an interval that spans 0 and weight 0 inside the others' range;
  *anchoring concentrates the update* predicts a slope interval above 0 while the total
  displacement ||theta - theta_base|| falls with the weight, and a growing share of the
  displacement in fewer units (``metrics.attribution.update_norms``).
- Decision: "rises" if the slope interval is above 0, "falls" if below, otherwise "no trend".

    python analyses/l2_strength.py                 # default world, 3 seeds (~5 min on 2 cores with --jobs 2)
    python analyses/l2_strength.py --quick --seeds 2

Writes ``analyses/results/l2_strength.json`` (per run and summary) and ``.md`` (the table).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interference.runs import RunStore  # noqa: E402
from interference.io import atomic_write_json, atomic_write_text  # noqa: E402
from interference.metrics.attribution import update_norms  # noqa: E402
from interference.metrics.forgetting import forgetting_rate  # noqa: E402
from interference.metrics.stats import mean_ci, ols_slope  # noqa: E402
from interference.models import load_model  # noqa: E402
from interference.bases import BaseSpec  # noqa: E402
from interference.records import FactOutcomes  # noqa: E402
from interference.sft_data import SFTDataConfig  # noqa: E402
from interference.train import FinetuneConfig, base_dir_of  # noqa: E402

WEIGHTS = (0.0, 0.001, 0.01, 0.1, 1.0)


def run_one(job: tuple) -> dict:
    """One (weight, seed) run (trained when missing) -> its numbers."""
    import torch
    torch.set_num_threads(1)
    weight, seed, quick, runs = job
    spec = BaseSpec.default(quick=quick)
    data = SFTDataConfig.quick(n_stability=1200) if quick else SFTDataConfig()
    cfg = FinetuneConfig(base=spec.to_dict(), data=dataclasses.replace(data, unknown_fraction=0.5, seed=seed),
                         method="l2_init", method_options={"weight": weight}, seed=seed,
                         epochs=30 if quick else 40, eval_every=50)
    rec = RunStore(runs).get(cfg)
    base_rec, now_rec = FactOutcomes.base_and_final(rec.timeline())
    model, _, _ = rec.load_model()
    base, _, _ = load_model(base_dir_of(cfg))
    norms = update_norms(model, base)
    return {"weight": weight, "seed": seed, "forgetting": forgetting_rate(base_rec, now_rec),
            "plasticity": rec.metrics["plasticity_accuracy"]["final"],
            "stability": rec.metrics["stability_accuracy"]["final"],
            "displacement": norms["total"],
            "displacement_share": {u: (v / norms["total"]) ** 2 for u, v in norms.items() if u != "total"}}


def summarise(rows: list[dict]) -> dict:
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["weight"], r["seed"]): r for r in rows}
    per_weight = {}
    for w in WEIGHTS:
        rs = [by[(w, s)] for s in seeds if (w, s) in by]
        units = sorted({u for r in rs for u in r["displacement_share"]})
        per_weight[f"{w:g}"] = {k: mean_ci([r[k] for r in rs]).to_dict()
                                for k in ("forgetting", "stability", "plasticity", "displacement")}
        per_weight[f"{w:g}"]["displacement_share"] = {u: mean_ci([r["displacement_share"].get(u, 0.0) for r in rs]).to_dict()
                                                      for u in units}
    positive = [w for w in WEIGHTS if w > 0]
    slopes = [ols_slope([math.log10(w) for w in positive], [by[(w, s)]["forgetting"] for w in positive])
              for s in seeds if all((w, s) in by for w in positive)]
    est = mean_ci(slopes).to_dict() if slopes else {"value": None, "low": None, "high": None, "n": 0}
    if est["n"] >= 2 and est["low"] is not None and est["low"] > 0:
        reading = "rises"
    elif est["n"] >= 2 and est["high"] is not None and est["high"] < 0:
        reading = "falls"
    else:
        reading = "no trend"
    return {"per_weight": per_weight, "slope_forgetting_per_decade": est, "per_seed_slopes": slopes,
            "reading": reading}


def table(res: dict) -> str:
    def f(e):
        if e["value"] is None:
            return "n/a"
        return f"{e['value']:.3f}" if e["n"] < 2 else f"{e['value']:.3f} ± {(e['high'] - e['low']) / 2:.3f}"
    lines = ["| L2 weight | forgetting | held-out kept | new facts learned | displacement ‖θ−θ_base‖ | largest share of it |",
             "|---|---|---|---|---|---|"]
    for w, e in res["summary"]["per_weight"].items():
        top = max(e["displacement_share"].items(), key=lambda kv: kv[1]["value"])
        lines.append(f"| {w} | {f(e['forgetting'])} | {f(e['stability'])} | {f(e['plasticity'])} | "
                     f"{f(e['displacement'])} | {top[0]} {top[1]['value']:.2f} |")
    s = res["summary"]["slope_forgetting_per_decade"]
    lines += ["", f"Forgetting per decade of L2 weight (0.001-1, per-seed OLS, mean and 95% t-CI over "
              f"{s['n']} seeds): {f(s)} [{s['low']:.3f}, {s['high']:.3f}] -> **{res['summary']['reading']}**."
              if s["value"] is not None and s["n"] >= 2 else "Too few seeds for the slope's interval."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="runs in this many processes (one thread each)")
    ap.add_argument("--runs", help="run directories (default runs/l2_strength[_quick])")
    ap.add_argument("--results", default=str(ROOT / "analyses" / "results"))
    args = ap.parse_args(argv)
    name = "l2_strength" + ("_quick" if args.quick else "")
    runs = args.runs or str(ROOT / "runs" / name)
    jobs = [(w, s, args.quick, runs) for s in range(args.seeds) for w in WEIGHTS]
    if args.jobs > 1:
        import multiprocessing as mp
        first = run_one(jobs[0])  # builds any shared stage once, before workers start side by side
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            rows = [first] + list(pool.map(run_one, jobs[1:]))
    else:
        rows = [run_one(j) for j in jobs]
    res = {"settings": {"weights": list(WEIGHTS), "seeds": args.seeds, "quick": args.quick,
                        "base": BaseSpec.default(quick=args.quick).hash()},
           "runs": rows, "summary": summarise(rows)}
    out = Path(args.results)
    atomic_write_json(out / f"{name}.json", res)
    atomic_write_text(out / f"{name}.md", table(res))
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
