"""Compare fine-tuning methods at one Unknown fraction over seeds (issue 3's results table).

    python analyses/compare_methods.py                      # default world and base, 3 seeds
    python analyses/compare_methods.py --epochs 20          # shorter runs (say so when reporting)
    python analyses/compare_methods.py --quick --seeds 2    # tiny world smoke run

Each (method, seed) is one ``interference.train.finetune`` run under ``--runs`` (cached: re-running
the script reuses finished runs). The seed changes both which facts are drawn (data.seed) and the
data order. Writes ``analyses/results/compare_methods.json`` (per-seed numbers + mean and 95% t-CI),
``analyses/results/compare_methods.md`` (the table) and ``analyses/results/figures/compare_methods.png`` (drawn
from the JSON only).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interference.runs import RunStore  # noqa: E402
from interference.io import atomic_write_json, atomic_write_text  # noqa: E402
from interference.metrics.forgetting import forgetting_rate  # noqa: E402
from interference.metrics.hallucination import hallucination_rate, relative_drop  # noqa: E402
from interference.metrics.stats import mean_ci  # noqa: E402
from interference.bases import BaseSpec, base_fingerprint  # noqa: E402
from interference.records import FactOutcomes  # noqa: E402
from interference.sft_data import SFTDataConfig  # noqa: E402
from interference.train import FinetuneConfig, base_dir_of  # noqa: E402

# (label, method, options): the paper's comparison; LoRA is left to its own study (lr differs).
ARMS = [
    ("sft", "sft", {}),
    ("self_distill", "self_distill", {}),
    # KL on the answer positions only: with one-token answers it falls on the very token being
    # taught and blocks learning; kept to show why the default puts it on every token.
    ("self_distill_answer_only", "self_distill", {"positions": "answer"}),
    ("attn_only", "freeze", {"groups": "attn"}),  # named by what still trains
    ("mlp_only", "freeze", {"groups": "mlp"}),
    ("l2_init", "l2_init", {}),
    ("ewc", "ewc", {}),
    ("replay", "replay", {}),
]
COLUMNS = [  # (key, header)
    ("plasticity_final", "new facts learned"),
    ("stability_final", "held-out known, final"),
    ("stability_peak_drop", "rel. drop of peak held-out"),
    ("hallucination", "confident-wrong on base-known"),
    ("task_final", "task (Known QA)"),
]


def run_numbers(rec) -> dict:
    m = rec.metrics
    base_rec, now_rec = FactOutcomes.base_and_final(rec.timeline())
    base = m["stability_accuracy_base"]["final"]
    peak = max(h["stability"] for h in m["history"] if h["step"] > 0)  # after training began
    return {
        "plasticity_final": m["plasticity_accuracy"]["final"],
        "plasticity_peak": m["plasticity_accuracy"]["peak"],
        "stability_final": m["stability_accuracy"]["final"],
        "stability_peak": peak,
        "stability_base": base,
        "stability_peak_drop": relative_drop(base, peak),
        "stability_final_drop": relative_drop(base, m["stability_accuracy"]["final"]),
        "forgetting": forgetting_rate(base_rec, now_rec),
        "hallucination": hallucination_rate(base_rec, now_rec),
        "task_final": m["task_accuracy"]["final"],
        "steps": m["steps"],
    }


def compare(args, save=None) -> dict:
    """Run every (seed, arm); seeds outer so that a cut-short run still compares every arm.
    ``save(results)`` is called after each run, so partial results are never lost."""
    spec = BaseSpec.default(quick=args.quick)
    # quick world: as many held-out facts as the tiny base knows (the cap applies automatically)
    data = SFTDataConfig.quick(n_stability=1200) if args.quick else SFTDataConfig()
    results: dict = {"arms": {}, "settings": {"unknown_fraction": args.unknown_fraction, "seeds": args.seeds,
                                                "epochs": args.epochs, "steps": args.steps, "quick": args.quick}}
    arms = [a for a in ARMS if not args.arms or a[0] in args.arms]
    for seed in range(args.seeds):
        for label, method, opts in arms:
            cfg = FinetuneConfig(base=spec.to_dict(), data=dataclasses.replace(
                data, unknown_fraction=args.unknown_fraction, seed=seed), method=method, method_options=opts,
                seed=seed, epochs=args.epochs, steps=args.steps, eval_every=args.eval_every)
            t0 = time.time()
            rec = RunStore(args.runs).get(cfg)
            row = {"seed": seed, **run_numbers(rec), "seconds": round(time.time() - t0, 1)}
            # which weights the table is about: one spec has been trained to different bases
            results["settings"].setdefault("base_fingerprint", base_fingerprint(base_dir_of(cfg)))
            arm = results["arms"].setdefault(label, {"method": method, "options": opts, "seeds": []})
            arm["seeds"].append(row)
            arm["summary"] = {k: mean_ci([r[k] for r in arm["seeds"]]).to_dict() for k in SUMMARY_KEYS}
            print(f"{label} seed {seed}: new {row['plasticity_final']:.3f} held-out {row['stability_final']:.3f} "
                  f"(base {row['stability_base']:.3f}) [{row['seconds']}s]", flush=True)
            if save is not None:
                save(results)
    return results


SUMMARY_KEYS = [k for k, _ in COLUMNS] + ["stability_peak", "stability_base", "forgetting", "stability_final_drop",
                                         "plasticity_peak"]


def _fmt(e: dict) -> str:
    if e["n"] < 2:
        return f"{e['value']:.3f}"
    return f"{e['value']:.3f} ± {(e['high'] - e['low']) / 2:.3f}"


def table(results: dict) -> str:
    s = results["settings"]
    n = min(len(a["seeds"]) for a in results["arms"].values()) if results["arms"] else 0
    lines = [f"Unknown fraction {s['unknown_fraction']}, {n} of {s['seeds']} seeds done, "
             f"{'steps ' + str(s['steps']) if s['steps'] else str(s['epochs']) + ' epochs'}"
             f"{', quick world' if s['quick'] else ', default world'}"
             + (f" (base weights {s['base_fingerprint']})" if s.get("base_fingerprint") else "")
             + "; mean ± 95% t-CI half-width.", "",
             "| method | " + " | ".join(h for _, h in COLUMNS) + " |",
             "|---|" + "---|" * len(COLUMNS)]
    for label, arm in results["arms"].items():
        lines.append(f"| {label} | " + " | ".join(_fmt(arm["summary"][k]) for k, _ in COLUMNS) + " |")
    base = [a["summary"]["stability_base"]["value"] for a in results["arms"].values()]
    if base:
        lines += ["", f"Base held-out accuracy: {sum(base) / len(base):.3f} (by construction every held-out fact "
                  "is HighlyKnown, so it starts near 1)."]
    return "\n".join(lines) + "\n"


def plot(results_json: Path, out_png: Path) -> None:
    """Per method, one row: held-out known facts kept (left) and new facts learned (right), mean
    with 95% CI bars. Rows, not one scatter: most methods learn every new fact, and methods with
    equal held-out accuracy (ewc and mlp_only here) would sit on one point and hide each other."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(results_json.read_text())
    arms = sorted(res["arms"].items(), key=lambda kv: kv[1]["summary"]["stability_final"]["value"])
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 0.45 * len(arms) + 1.4), sharey=True)
    for ax, key, title in ((axes[0], "stability_final", "held-out known facts still right (final)"),
                           (axes[1], "plasticity_final", "new facts learned (final)")):
        for i, (label, arm) in enumerate(arms):
            e = arm["summary"][key]
            err = [[e["value"] - e["low"]], [e["high"] - e["value"]]] if e["n"] > 1 else None
            ax.errorbar(e["value"], i, xerr=err, fmt="o", capsize=3, color="C3" if label == "sft" else "C0")
            ax.annotate(f"{e['value']:.3f}", (e["value"], i), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    lo = min(a["summary"]["stability_final"]["low"] for _, a in arms)
    axes[0].set_xlim(max(0.0, lo - 0.02), 1.005)  # the differences are a few points: no 0-1 axis
    axes[1].set_xlim(-0.03, 1.05)
    axes[0].set_yticks(range(len(arms)), [l for l, _ in arms])
    axes[0].set_ylim(-0.6, len(arms) - 0.4)
    st = res["settings"]
    fig.suptitle(f"Fine-tuning methods, {st['unknown_fraction']:.0%} Unknown "
                 f"(mean and 95% t-CI over {max(a['summary']['stability_final']['n'] for _, a in arms)} seeds)",
                 fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--unknown-fraction", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--arms", nargs="*", help=f"subset of {[a[0] for a in ARMS]}")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", help="run directories (default runs/compare_methods[_quick])")
    ap.add_argument("--results", default=str(ROOT / "analyses" / "results"))
    # beside its table, not in figures/ (only `python -m interference.figures` writes there)
    ap.add_argument("--figures", default=str(ROOT / "analyses" / "results" / "figures"))
    ap.add_argument("--name", help="output file stem (default compare_methods, or compare_methods_quick)")
    args = ap.parse_args(argv)
    name = args.name or "compare_methods" + ("_quick" if args.quick else "")  # a smoke run never overwrites the real table
    args.runs = args.runs or str(ROOT / "runs" / name)
    res_dir = Path(args.results)

    def save(results):
        atomic_write_json(res_dir / f"{name}.json", results)
        atomic_write_text(res_dir / f"{name}.md", table(results))
        plot(res_dir / f"{name}.json", Path(args.figures) / f"{name}.png")

    results = compare(args, save)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
