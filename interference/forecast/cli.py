"""Command line: forecast which known facts an SFT set will break, and optionally check it.

    python -m interference.forecast --sft-data runs/sft/sft_data.json --out runs/forecast
    python -m interference.forecast --sft-data FILE --method sft --method self_distill --method freeze
    python -m interference.forecast --sft-data FILE --evaluate --seeds 5 --out runs/forecast_eval
    python -m interference.forecast --sft-data FILE --culprits 5 --out runs/forecast

Writes ``OUT/at_risk_<method>.json`` and ``.csv``: watched facts ranked by risk (fact, risk, the
new facts driving it and their values). ``--evaluate`` fine-tunes ``--seeds`` runs per method on
the same base and data recipe (``interference.train.finetune``) and writes ``OUT/forecast.json``
(``auroc`` per predictor: forecast, fragility, overlap, gradient_alignment, random, each
{mean, lo, hi, n} over seeds), ``per-method`` tables and ``OUT/calibration.png``.
``--culprits K`` also writes, for the at-risk facts (the top ``--top``, default the top 5%),
``OUT/culprits.json`` (each fact's K culprits in the SFT set: ``forecast.culprits``),
``OUT/exclude.json`` (the SFT facts to drop within ``--budget`` of the set) and
``OUT/replay.json`` (the at-risk facts to replay); ``python -m interference.finetune --exclude
OUT/exclude.json --replay-facts OUT/replay.json`` trains on the curated set.
Bad input prints ``error: <one sentence>`` and exits 2 before anything is written.
"""
from __future__ import annotations

import sys
from pathlib import Path

from interference.cli import Parser, add_common, add_seeds, finite_float, run_main

METHODS = ("sft", "self_distill", "freeze")


def build_parser() -> Parser:
    ap = Parser(prog="python -m interference.forecast", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sft-data", required=True, help="sft_data.json of a fine-tuning run (or the run directory)")
    ap.add_argument("--base", help="pre-trained base directory (default: the run's base, else the cached default base)")
    ap.add_argument("--out", default="runs/forecast", help="output directory")
    ap.add_argument("--method", action="append", choices=METHODS, help="forecast for this method (repeatable; default sft)")
    ap.add_argument("--combiner", help="combiner JSON (default: the packaged one fitted on the default world)")
    ap.add_argument("--top", type=int, help="write only the top N facts")
    ap.add_argument("--evaluate", action="store_true", help="fine-tune and score the forecast against real forgetting")
    add_seeds(ap, "fine-tuning runs per method for --evaluate (each seed is the data and the model seed)", default=5)
    ap.add_argument("--runs", help="where --evaluate keeps its fine-tuning runs (default OUT/runs)")
    ap.add_argument("--culprits", type=int, metavar="K", help="write each at-risk fact's K culprits, exclude.json and replay.json")
    ap.add_argument("--budget", type=finite_float,
                    help="with --culprits: share of the SFT set to drop or replay (default 0.05)")
    add_common(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    return run_main(lambda: _main(ap, args))


def _main(ap: Parser, args) -> int:
    """The command's body; the shared ``run_main`` turns a known error (a bad file, an unusable
    model, a full disk) into one sentence and exit 2."""
    methods = tuple(dict.fromkeys(args.method or ["sft"]))
    if args.seeds < 2 and args.evaluate:
        ap.error("--evaluate needs at least 2 seeds (the combiner is fitted on some seeds and scored on others)")
    if args.top is not None and args.top < 1:
        ap.error("--top must be a positive number of facts")
    if args.culprits is not None and args.culprits < 1:
        ap.error("--culprits must be a positive number of culprits per fact")
    if args.budget is not None and args.culprits is None:
        ap.error("--budget sets how much of the SFT set --culprits may drop; give --culprits K too")
    args.budget = 0.05 if args.budget is None else args.budget
    if args.culprits is not None and not 0 < args.budget <= 1:
        ap.error("--budget must be a share of the SFT set in (0, 1], e.g. 0.05")
    if args.culprits is not None and args.evaluate:
        ap.error("--culprits forecasts one SFT set; run it without --evaluate")
    from interference.forecast.api import forecast_run, read_sft_data
    from interference.models import resolve_device
    from interference.threads import configure_threads
    device = str(resolve_device(args.device))
    configure_threads(device)
    args.device = device
    out = Path(args.out)
    # ForecastInputError, CombinerError and SFTDataError are ValueErrors: run_main reports them
    if args.evaluate:
        return _evaluate(args, methods, out, read_sft_data(args.sft_data))
    fcs = forecast_run(args.sft_data, args.base, methods, args.combiner, device=args.device)
    out.mkdir(parents=True, exist_ok=True)
    for m, fc in fcs.items():
        fc.to_json(out / f"at_risk_{m}.json", args.top)
        fc.to_csv(out / f"at_risk_{m}.csv", args.top)
        top = fc.rows(5)
        print(f"{m}: {len(fc.risk)} watched facts; most at risk: " +
              ", ".join(f"{r['fact_id']} ({r['risk']:.2f})" for r in top))
    print(f"wrote {out}/at_risk_<method>.json and .csv")
    if args.culprits is not None:
        from interference.forecast.culprits import curation
        from interference.io import atomic_write_json
        fc = fcs["sft"] if "sft" in fcs else next(iter(fcs.values()))
        cur = curation(fc, args.sft_data, args.base, k=args.culprits, at_risk=args.top, budget=args.budget)
        for name, obj in cur.items():
            atomic_write_json(out / f"{name}.json", obj)
        print(f"culprits of {len(cur['culprits']['rows'])} at-risk facts; dropping {len(cur['exclude']['exclude'])} "
              f"of {cur['culprits']['n_train']} SFT facts; wrote {out}/culprits.json, exclude.json, replay.json")
    return 0


def is_quick_base(base: dict) -> bool:
    """Whether a run's saved base spec is the quick one. Compared by hash: a spec read back from
    JSON holds lists where the dataclass holds tuples, so comparing dicts called every quick run
    a default-world one (and the evaluation then pre-trained the default base)."""
    from interference.io import config_hash
    from interference.bases import BaseSpec
    return config_hash(base) == BaseSpec.default(quick=True).hash()


def _evaluate(args, methods, out: Path, sft: dict) -> int:
    import json
    from interference.forecast.evaluate import EvalConfig, evaluate
    from interference.train import FinetuneConfig

    run_cfg = Path(sft["_path"]).parent / "config.json"
    data, base_dir, quick = {}, args.base, False
    if run_cfg.exists():
        cfg = FinetuneConfig.from_dict(json.loads(run_cfg.read_text()))
        data = {k: v for k, v in cfg.data.to_dict().items() if k != "seed"}
        base_dir = base_dir or cfg.base_dir
        quick = is_quick_base(cfg.base)
    ecfg = EvalConfig(seeds=args.seeds, methods=methods, quick=quick, base_dir=base_dir, data=data)
    res = evaluate(ecfg, Path(args.runs) if args.runs else out / "runs", out, progress=not args.no_progress,
                   device=args.device)
    a = res["auroc"]
    print("AUROC (mean [95% CI] over held-out seeds): " +
          "; ".join(f"{p} {v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" for p, v in a.items()))
    print(f"wrote {out}/forecast.json and {out}/calibration.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
