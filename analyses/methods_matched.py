"""Fine-tuning methods compared at matched learning, and freezing in the paper's own setting.

    python analyses/methods_matched.py                      # default world and base, 3 seeds
    python analyses/methods_matched.py --seeds 2 --arms sft,self_distill
    python analyses/methods_matched.py --quick --seeds 2    # tiny world smoke run

Part A (matched learning). Every method trains the same number of steps on the same SFT set
(50% Unknown, 400 facts, lr 3e-4, batch 32) with an evaluation every ``--eval-every`` steps. Each
is read at the point where it first answers >= 95% of its new facts (plasticity), interpolated
between the two evaluations around it (``interference.metrics.matched``), and also at the last
step. A method that never gets there is reported as such: blocking learning is not "forgetting
less". Self-distillation uses the format teacher (base + 1 epoch of SFT on the Known facts) with
the KL on every real token, temperature 0.5 and no T^2 factor (see
``interference.methods.self_distill``); l2_init's weight is matched to that KL's gradient norm.

Part B (freezing where new knowledge is not needed). The paper's claim: training only some
parameter groups keeps the task (answering Known questions in the QA format) while suppressing the
learning of Unknown facts and the hallucinations that follow. Same data and steps, trainable
groups varied (the rest frozen); reference: all parameters on Known-only data (the task without
any new knowledge). Read at the last step (equal steps): task accuracy, new facts learned,
held-out known retained, confident-wrong answers on base-known facts.

Writes ``analyses/results/methods_matched/results.json`` (per-seed numbers and mean with 95%
t-interval) and ``table.md``, after every finished run (a cut-short run keeps what it finished).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interference.runs import RunStore  # noqa: E402
from interference.io import atomic_write_json, atomic_write_text  # noqa: E402
from interference.metrics.hallucination import hallucination_curve  # noqa: E402
from interference.metrics.matched import first_crossing, interpolate_at  # noqa: E402
from interference.metrics.stats import mean_ci  # noqa: E402

OUT = ROOT / "analyses" / "results" / "methods_matched"
MATCH_AT = 0.95  # plasticity at which methods are compared (the hypothesis runners' "learned")
FROZEN_REST = "attn,mlp,norm"
# (label, part, method, options, data overrides). Freeze's ``groups`` name what *trains*.
ARMS = [
    ("sft", "AB", "sft", {}, {}),
    ("self_distill", "A", "self_distill", {"teacher": "format", "positions": "all"}, {}),
    ("l2_init_kl_matched", "A", "l2_init", {"match": "kl"}, {}),
    ("ewc", "A", "ewc", {}, {}),
    ("replay", "A", "replay", {}, {}),
    ("attn_only", "AB", "freeze", {"groups": "attn"}, {}),
    ("mlp_only", "AB", "freeze", {"groups": "mlp"}, {}),
    ("unembed_only", "B", "freeze", {"groups": "unembed"}, {}),
    ("embed_only", "B", "freeze", {"groups": "embed"}, {}),
    ("norm_only", "B", "freeze", {"groups": "norm"}, {}),
    ("embed_unembed_frozen", "B", "freeze", {"groups": FROZEN_REST}, {}),
    ("known_only_sft", "B", "sft", {}, {"unknown_fraction": 0.0}),
]


def run_numbers(rec) -> dict:
    """Matched and final readings of one run from its metrics history and timeline."""
    hist = [dict(h) for h in rec.metrics["history"]]
    curve = {c["step"]: c for c in hallucination_curve(rec.timeline(), "stability")}
    for h in hist:
        c = curve.get(h["step"], {})
        h["forgetting"], h["hallucination"] = c.get("forgetting", math.nan), c.get("hallucination", math.nan)
    cross = first_crossing(hist, MATCH_AT)
    last = max(hist, key=lambda h: h["step"])
    out = {"matched": cross is not None, "steps_to_match": cross["step"] if cross else math.nan,
           "plasticity_max": max(h["plasticity"] for h in hist if h["step"] > 0)}
    for k in ("stability", "forgetting", "hallucination", "task"):
        out[f"{k}_at_match"] = interpolate_at(hist, MATCH_AT, k)
        out[f"{k}_final"] = last[k]
    out["plasticity_final"] = last["plasticity"]
    out["stability_base"] = hist[0]["stability"]
    return out


def _est(values) -> dict:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return {"value": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    e = mean_ci(v)
    return {"value": e.value, "low": e.low, "high": e.high, "n": e.n}


def run(args, save) -> dict:
    from interference.bases import BaseSpec
    from interference.sft_data import SFTDataConfig
    from interference.train import FinetuneConfig
    spec = BaseSpec.default(quick=args.quick)
    data = SFTDataConfig.quick() if args.quick else SFTDataConfig(n_stability=args.n_stability)
    chosen = [a for a in ARMS if not args.arms or a[0] in args.arms.split(",")]
    res = {"settings": {"seeds": args.seeds, "steps": args.steps, "eval_every": args.eval_every, "lr": args.lr,
                        "match_at": MATCH_AT, "quick": args.quick, "n_stability": data.n_stability,
                        "unknown_fraction": data.unknown_fraction, "base": spec.hash()}, "arms": {}}
    for seed in range(args.seeds):  # seeds outer: a cut-short run still compares every arm
        for label, part, method, opts, data_kw in chosen:
            cfg = FinetuneConfig(base=spec.to_dict(), data=dataclasses.replace(data, seed=seed, **data_kw),
                                 method=method, method_options=opts, seed=seed, steps=args.steps, lr=args.lr,
                                 eval_every=args.eval_every, ckpt_every=10 ** 6)
            t0 = time.time()
            rec = RunStore(args.runs).get(cfg)
            row = {"seed": seed, **run_numbers(rec), "seconds": round(time.time() - t0, 1),
                   "method_options": rec.config.method_options}
            arm = res["arms"].setdefault(label, {"part": part, "method": method, "options": opts,
                                                 "data": data_kw, "seeds": []})
            arm["seeds"].append(row)
            keys = [k for k in row if k not in ("seed", "method_options", "matched")]
            arm["summary"] = {k: _est([r[k] for r in arm["seeds"]]) for k in keys}
            arm["summary"]["matched_share"] = _est([float(r["matched"]) for r in arm["seeds"]])
            print(f"{label} seed {seed}: matched={row['matched']} at {row['steps_to_match']} "
                  f"stab@match {row['stability_at_match']:.3f} final new {row['plasticity_final']:.3f} "
                  f"task {row['task_final']:.3f} [{row['seconds']}s]", flush=True)
            save(res)
    return res


def _f(e: dict) -> str:
    if e is None or e["n"] == 0 or e["value"] is None or not math.isfinite(e["value"]):
        return "n/a"
    if e["n"] < 2:
        return f"{e['value']:.3f}"
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


# The two tables: (part, heading, [(column header, summary key)]); part A reads each method where it
# first reaches MATCH_AT, part B at the last step (equal steps).
TABLES = (
    ("A", "## A. Matched learning (read where each method first answers >= {match_at:.0%} of its new facts)",
     [("method", None), ("runs reaching the match", "matched_share"), ("steps to match", "steps_to_match"),
      ("held-out known at match", "stability_at_match"), ("forgetting at match", "forgetting_at_match"),
      ("confident-wrong at match", "hallucination_at_match"), ("task at match", "task_at_match"),
      ("held-out known, final (equal steps)", "stability_final")]),
    ("B", "## B. Freezing where new knowledge is not needed (equal steps, last step)",
     [("trained groups", None), ("task (held-out Known QA)", "task_final"), ("new facts learned", "plasticity_final"),
      ("held-out known", "stability_final"), ("confident-wrong on base-known", "hallucination_final")]),
)


def part_table(arms: dict, part: str, columns) -> list[str]:
    """Markdown rows of one part: the arms whose ``part`` includes it, one column per summary key
    (``None``: the arm's label)."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for label, a in arms.items():
        if part in a["part"]:
            lines.append("| " + " | ".join(label if k is None else _f(a["summary"][k]) for _, k in columns) + " |")
    return lines


def table(res: dict) -> str:
    s = res["settings"]
    arms = res["arms"]
    n = min((len(a["seeds"]) for a in arms.values()), default=0)
    lines = [f"Base {s['base']}, {s['steps']} steps, lr {s['lr']}, evaluation every {s['eval_every']} steps, "
             f"{s['unknown_fraction']:.0%} Unknown SFT set, {s['n_stability']} held-out known facts, {n} seeds "
             f"(of {s['seeds']} asked); mean [95% t-interval over seeds]."]
    for part, heading, columns in TABLES:
        lines += ["", heading.format(**s), "", *part_table(arms, part, columns)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--n-stability", type=int, default=600)
    ap.add_argument("--arms", default="", help="comma-separated labels (default: all)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", default="runs/methods_matched")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    known = {a[0] for a in ARMS}
    bad = [a for a in args.arms.split(",") if a and a not in known]
    if bad or args.seeds < 1 or args.steps < 1:
        print(f"error: {'unknown arm(s) ' + str(bad) + '; choose from ' + str(sorted(known)) if bad else '--seeds and --steps must be >= 1'}.",
              file=sys.stderr)
        return 2
    out = Path(args.out)

    def save(res):
        atomic_write_json(out / "results.json", res)  # nan -> null, with each estimate's n
        atomic_write_text(out / "table.md", table(res))
    import torch
    torch.set_num_threads(1)
    save(run(args, save))
    print(f"wrote {out / 'results.json'} and {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
