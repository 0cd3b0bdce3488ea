"""Rebuild the paper's figures: ``python -m interference.figures [--quick] [--only NAME] [--out DIR]``.

Every figure is computed from cached runs (trained here only when missing, through
``interference.train.finetune``) or from another command's saved results, then drawn as PNG and
PDF into ``--out``. Figures whose input another command must produce (hypothesis verdicts, the
forecast) are skipped with one sentence naming that command. Exit 0 when every figure that could
be built was built, 1 if one failed, 2 on bad input.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

DEFAULT_OUT = {False: "figures", True: "figures/quick"}
DEFAULT_RUNS = {False: "runs/figures", True: "runs/figures_quick"}
DATA_VERSION = 2  # bump when a compute step's output changes shape, so cached data is recomputed


def build_parser():
    from interference.cli import Parser, add_common
    ap = Parser(prog="python -m interference.figures", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny world, few seeds (minutes on 2 cores)")
    ap.add_argument("--only", help="comma-separated figure names (see --list)")
    from interference.cli import out_dir
    ap.add_argument("--out", type=out_dir, help="output directory (default figures/, or figures/quick/ with --quick)")
    ap.add_argument("--runs", type=out_dir, help="fine-tuning run cache (default runs/figures[_quick])")
    ap.add_argument("--configs", help="directory of figure configs (default: the packaged interference/figures/configs)")
    ap.add_argument("--hypotheses", help="hypothesis results directory (overrides the configs' hypotheses_dir)")
    ap.add_argument("--forecast", help="forecast results directory (overrides the configs' forecast_dir)")
    ap.add_argument("--list", action="store_true", help="list the figures and exit")
    ap.add_argument("--plan", action="store_true", help="say which runs each figure needs and which are cached; train nothing")
    ap.add_argument("--recompute", action="store_true", help="recompute figure data even when the saved data matches")
    ap.add_argument("--produce", action="store_true",
                    help="run the hypothesis / forecast commands whose results a figure needs when they are missing")
    ap.add_argument("--jobs", type=int, default=1,
                    help="train missing runs in this many processes first (one thread each; 2 on 2 cores)")
    add_common(ap)
    ap.add_argument("--traceback", action="store_true", help="stop at the first failing figure with its traceback")
    return ap


def parse(argv):
    return build_parser().parse_args(argv)


def select(only: str | None, names: list[str]) -> list[str]:
    if not only:
        return names
    asked = [n.strip() for n in only.split(",") if n.strip()]
    bad = [n for n in asked if n not in names]
    if bad:
        raise ValueError(f"unknown figure {bad[0]!r}; valid names are: {', '.join(names)}.")
    return asked


def _cached_data(path: Path, key: dict):
    """The saved data of a figure if its file verifies (it carries a sha256 of its content) and
    was computed for ``key``; a damaged, edited or unsealed (older) file is recomputed, never
    trusted."""
    from interference.io import read_checked_json
    if not path.exists():
        return None
    stored, why = read_checked_json(path, legacy_ok=False)
    if stored is None:
        print(f"note: the saved figure data {path} cannot be trusted ({why}); computing it again.", file=sys.stderr)
        return None
    return stored.get("data") if stored.get("key") == key else None


def build(fig, cfg, ctx, out: Path, recompute: bool = False) -> list[Path]:
    """Compute (or reuse) the data of one figure, save it, and draw it."""
    from interference.io import json_ready, write_checked_json
    data_file = out / "data" / f"{fig.name}.json"
    key = {"figure": fig.name, "config": cfg.to_dict(), "quick": ctx.quick, "version": DATA_VERSION}
    data = None if (recompute or fig.reads_results) else _cached_data(data_file, key)
    if data is None:
        data = json_ready(fig.compute(cfg, ctx))
        write_checked_json(data_file, {"key": key, "data": data})
    elif fig.refresh is not None:
        data = json_ready(fig.refresh(cfg, ctx, data))
    return fig.plot(data, out)


def main(argv=None) -> int:
    args = parse(argv)
    from interference.figures import FIGURES
    names = list(FIGURES)
    if args.list:
        for f in FIGURES.values():
            print(f"{f.name:<14} {f.paper}")
        return 0
    from interference.models import ModelError
    try:
        chosen = select(args.only, names)
        return run(args, chosen)
    except (ValueError, ModelError) as e:  # bad names, configs, --jobs or --device: one sentence, nothing written
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args, chosen: list[str]) -> int:
    from tqdm.auto import tqdm

    from interference.figures import FIGURES, FigureContext
    from interference.figures.config import load_config
    from interference.figures.runs import MissingInput, RunCache
    from interference.io import RunDirError
    from interference.methods import MethodError
    from interference.models import ModelError, resolve_device
    from interference.sft_data import SFTDataError

    cfgs = {n: load_config(FIGURES[n].config, n, args.quick, args.configs) for n in chosen}  # all checked first
    for n, cfg in cfgs.items():
        for flag, field in (("hypotheses", "hypotheses_dir"), ("forecast", "forecast_dir")):
            if getattr(args, flag) and hasattr(cfg, field):
                cfgs[n] = cfg = dataclasses.replace(cfg, **{field: getattr(args, flag)})
    device = str(resolve_device(args.device))
    if device == "cpu":
        import torch
        torch.set_num_threads(1)  # tiny models: a second thread only spin-waits on a shared machine
    cache = RunCache(args.runs or DEFAULT_RUNS[args.quick], args.quick, device=device)
    if args.plan:
        return plan(cfgs, cache)
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs} runs nothing; use 1 or more.")
    if args.jobs > 1:
        from interference.figures import planned_runs
        from interference.figures.runs import train_missing
        train_missing([r for cfg in cfgs.values() for r in planned_runs(cfg)], cache, args.jobs, not args.no_progress)
    out = Path(args.out or DEFAULT_OUT[args.quick])
    ctx = FigureContext(cache, args.quick)
    if args.produce:
        from interference.figures.produce import produce
        for line in produce(cfgs, ctx, not args.no_progress, jobs=args.jobs):
            print(f"  produced: {line}")
    built, skipped, failed = [], [], []
    t0 = time.time()
    bar = tqdm(chosen, desc="figures", unit="fig", disable=args.no_progress, dynamic_ncols=True)
    for n in bar:
        cache.status = lambda s, n=n: bar.set_postfix_str(f"{n}: {s}")
        bar.set_postfix_str(n)
        try:
            paths = build(FIGURES[n], cfgs[n], ctx, out, args.recompute)
            built.append((n, paths[0]))
        except MissingInput as e:
            skipped.append((n, str(e)))
        except (RunDirError, ModelError, MethodError, SFTDataError, ValueError) as e:
            failed.append((n, str(e)))
        except Exception as e:  # a bug in one figure must not cost the others; --traceback shows it
            if args.traceback:
                raise
            failed.append((n, f"{type(e).__name__}: {e} (re-run with --only {n} --traceback for the traceback)"))
    bar.close()
    for n, p in built:
        print(f"  {n:<14} {p}")
    for n, why in skipped:
        print(f"  {n:<14} skipped: {why}")
    for n, why in failed:
        print(f"  {n:<14} FAILED: {why}", file=sys.stderr)
    print(f"{len(built)} built, {len(skipped)} skipped, {len(failed)} failed in {time.time() - t0:.0f}s; "
          f"runs: {cache.trained} trained, {cache.reused} reused (cache {cache.root})")
    return 1 if failed else 0


def plan(cfgs: dict, cache) -> int:
    from interference.figures import planned_runs
    needed, missing = set(), set()
    for n, cfg in cfgs.items():
        runs = planned_runs(cfg)
        todo = [r for r in runs if not cache.is_cached(*r)]
        needed |= {cache.run_dir(*r) for r in runs}
        missing |= {cache.run_dir(*r) for r in todo}
        print(f"  {n:<14} {len(runs)} runs, {len(runs) - len(todo)} cached"
              + (f"; to train: {', '.join(f'{a.label}-s{s}' for a, s, _ in todo)}" if todo else ""))
    print(f"{len(needed)} distinct runs, {len(missing)} not cached yet, under {cache.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
