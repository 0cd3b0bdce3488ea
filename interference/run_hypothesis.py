"""Test one of the paper's three hypotheses for why SFT makes a model forget, end to end.

    python -m interference.run_hypothesis localized                 # default world, ~10 min on 2 cores
    python -m interference.run_hypothesis all --quick --seeds 2     # tiny world, for tests and CI
    python -m interference.run_hypothesis capacity --seeds 5 --world world.json --out runs/h
    python -m interference.run_hypothesis localized --model ~/models/Qwen2.5-1.5B --data ~/data/eq --out runs/hq
    python -m interference.run_hypothesis culprits --quick --seeds 3   # culprit removal (issue 20); not in `all`
    python -m interference.run_hypothesis aimed_replay --quick         # replay aimed by the forecast; not in `all`
    python -m interference.run_hypothesis bc_contrast --quick          # behavior cloning's share, idk arm mended
    python -m interference.run_hypothesis bc_self --widths 64,128,256  # behavior cloning's share, behaviour without content
    python -m interference.run_hypothesis capacity_sweep               # capacity's uuid count sweep on the pinned d64
    python -m interference.run_hypothesis decomposition --widths 64,128 --first-seed 5 --seeds 3   # more seeds, joined later
    python -m interference.run_hypothesis decomposition --widths 64 --consolidations 2   # on the 2x-consolidated bases

Writes ``OUT/<hypothesis>/verdict.json`` (verdict, share with its 95% CI over seeds, statistics
with CIs, the deciding rule, per-seed metrics), ``per_seed.json`` and PNG + PDF plots; ``all``
also writes ``OUT/summary.json`` and ``OUT/summary.png|pdf``. Finished cells are stored under
``OUT/cells`` and reused, so a re-run (or a run with more seeds) only computes what is missing.

Each hypothesis runs its own pre-registered experiment (``PREREGISTERED`` in its module: endpoint,
the three hypotheses' predictions, the rule); the registration's hash is part of every cell key
and of the output directory's config, so results planned under another endpoint are never
reused. Default seeds: 5 for capacity and behavior_cloning (capacity also pre-trains a d64 base).

With ``--model DIR --data PATH`` behavior_cloning and localized run on a real model and real QA
data (``hypotheses.real_world``: SliCK for what the base knows, fictitious entities from its own
tokenizer), and capacity runs as a uuid-key count sweep on the one model
(``hypotheses.capacity_sweep``); all is refused there.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

# The hypothesis modules load torch; they are imported when first used (``HYPOTHESES``), so
# ``--help`` answers at once. tests/test_cli.py checks NAMES against the modules' own NAMEs.
NAMES = ("capacity", "behavior_cloning", "localized")
EXPERIMENT_NAMES = NAMES + ("culprits", "decomposition", "aimed_replay", "bc_contrast", "bc_self", "capacity_sweep")  # by name, not by `all` (its summary is the three hypotheses')
DEFAULT_OUT = "runs/hypotheses"


def __getattr__(name: str):
    if name == "HYPOTHESES":  # name -> module, imported on first use (the registry in interference.hypotheses)
        from interference.hypotheses import HYPOTHESES
        return HYPOTHESES
    raise AttributeError(name)


class UsageError(ValueError):
    """Bad command-line input; the message is one sentence for stderr."""


def _config(module, quick: bool, seeds: int | None, consolidations: tuple[float, ...] | None = None,
            widths: tuple[int, ...] | None = None, first_seed: int | None = None):
    cfg = module.config(quick)
    cfg = dataclasses.replace(cfg, seeds=seeds) if seeds is not None else cfg
    if first_seed is not None:
        cfg = with_first_seed(cfg, first_seed, module.NAME)
    if widths is not None:
        if not hasattr(cfg, "widths"):
            raise UsageError(f"--widths applies to decomposition, bc_contrast and bc_self, not {module.NAME}; leave it out.")
        cfg = dataclasses.replace(cfg, widths=widths)
    if consolidations is not None:
        if hasattr(cfg, "consolidations"):
            cfg = dataclasses.replace(cfg, consolidations=consolidations)
        elif hasattr(cfg, "consolidation"):  # a design run on one level's bases (decomposition)
            if len(consolidations) != 1:
                raise UsageError(f"{module.NAME} runs on the bases of one consolidation level; give one "
                                 f"(--consolidations 0.5), and each level its own --out.")
            cfg = dataclasses.replace(cfg, consolidation=consolidations[0])
        else:
            raise UsageError(f"--consolidations applies to capacity, behavior_cloning and decomposition, not "
                             f"{module.NAME}; leave it out.")
    return cfg


def with_first_seed(cfg, first_seed: int, name: str):
    """``--first-seed K``: the run's seeds are K .. K + seeds - 1 (``grid.seed_range``)."""
    if not hasattr(cfg, "first_seed"):
        raise UsageError(f"--first-seed applies to decomposition, localized and bc_self, not {name}; leave it out.")
    if first_seed < 0:
        raise UsageError(f"--first-seed {first_seed} must be 0 or more.")
    return dataclasses.replace(cfg, first_seed=first_seed)


def sweep_budget(cfg, counts: str | None, epochs: int | None):
    """``--counts`` / ``--epochs`` of a count sweep: which counts, and how many passes over each."""
    if counts is not None:
        cfg = dataclasses.replace(cfg, counts=tuple(sorted(set(_counts(counts)))))
    if epochs is not None:
        if epochs < 1:
            raise UsageError(f"--epochs {epochs} must be at least 1 (passes over each count's new facts).")
        cfg = dataclasses.replace(cfg, epochs=epochs)
    return cfg


def _widths(text: str) -> tuple[int, ...]:
    """``--widths 64,128,256``: base widths (d_model), each a positive multiple of the 4 heads."""
    try:
        widths = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        widths = ()
    if not widths or any(w < 4 or w % 4 for w in widths):
        raise UsageError(f"--widths {text!r} must be comma-separated widths that are positive multiples of 4, "
                         "e.g. 64,128,256.")
    return tuple(sorted(set(widths)))


def _levels(text: str) -> tuple[float, ...]:
    """``--consolidations 0.5,2``: extra base consolidation levels, each a positive finite number."""
    try:
        levels = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        levels = ()
    if not levels or any(not math.isfinite(c) or c <= 0 for c in levels):
        raise UsageError(f"--consolidations {text!r} must be a comma-separated list of positive numbers, e.g. 0.5,2 "
                         "(steps after memorisation, as multiples of the memorisation step).")
    return levels


def _counts(text: str) -> tuple[int, ...]:
    """``--counts 8,32,128``: capacity's count sweep on a real model, positive whole numbers."""
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        counts = ()
    if len(set(counts)) < 2 or min(counts) < 1:
        raise UsageError(f"--counts {text!r} must list at least two different positive whole numbers of new entities, "
                         "e.g. 8,32,128.")
    return counts


def _settings_that_differ(old: dict, new: dict) -> str:
    """The settings two runs' configs differ in, as a reader compares them: ``steps 250 there,
    60 here``; a setting one of them lacks (a run made before the setting existed) says so."""
    parts = []
    for k in sorted(set(old) | set(new)):
        if old.get(k, ...) == new.get(k, ...):
            continue
        there = "absent" if k not in old else json.dumps(old[k], sort_keys=True)
        here = "absent" if k not in new else json.dumps(new[k], sort_keys=True)
        parts.append(f"{k} {there if len(there) <= 40 else '...'} there, {here if len(here) <= 40 else '...'} here")
    return "; ".join(parts) or "the same settings in another order"


def _check_compatible(d: Path, expected: dict, name: str) -> None:
    """Refuse, touching nothing, an output directory that holds a different earlier run."""
    from interference.io import config_hash
    cfg = d / "config.json"
    if cfg.exists():
        try:
            old = json.loads(cfg.read_text())
        except json.JSONDecodeError:
            raise UsageError(f"{cfg} is not valid JSON, so {d} cannot be reused; choose another --out.") from None
        if config_hash(old) != config_hash(expected):
            expected = json.loads(json.dumps(expected))  # tuples as JSON stores them, to compare parts
            what = ("world or base model" if old.get("base") != expected["base"] else
                    "pre-registration (endpoint, predictions or rule), so its cells answer another question"
                    if old.get("preregistered") != expected.get("preregistered") else
                    f"experiment settings ({_settings_that_differ(old.get('config') or {}, expected.get('config') or {})})")
            raise UsageError(f"{d} holds an earlier {name} run with different {what}; choose another --out "
                             "or delete that directory.")
    elif d.exists() and any(not p.name.startswith(".") for p in d.iterdir()):
        raise UsageError(f"{d} is not empty and holds no run of ours; choose another --out.")


MAX_SEEDS = 1000  # a grid of more cells than this is a typo (--seeds 10**30 ran until memory was gone)
OUR_MARKS = ("cells", "summary.json", *EXPERIMENT_NAMES)


def _check_out(out: Path, seeds: int | None) -> None:
    """Refuse, touching nothing, ``--out`` that is a non-empty directory with nothing of ours in
    it (no cells, no hypothesis directory, no summary), and a seed count that cannot finish."""
    if seeds is not None and not 1 <= seeds <= MAX_SEEDS:
        raise UsageError(f"--seeds {seeds} must be between 1 and {MAX_SEEDS} (2+ for a verdict).")
    if out.is_dir():
        names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
        if names and not names & set(OUR_MARKS):
            raise UsageError(f"{out} is not empty and holds no hypothesis run of ours (no cells/, no hypothesis "
                             "directory, no summary.json); choose another --out.")


def build_parser():
    from interference.cli import Parser, add_common, add_real_arguments, add_seeds, out_dir
    ap = Parser(prog="python -m interference.run_hypothesis", description=__doc__.split("\n\n")[0])
    ap.add_argument("hypothesis", help=f"one of {', '.join(list(EXPERIMENT_NAMES) + ['all'])}")
    add_seeds(ap, "per grid cell (default: per hypothesis, see its config)")
    ap.add_argument("--first-seed", type=int, default=None, metavar="K",
                    help="decomposition and localized: run seeds K .. K+N-1 instead of 0 .. N-1 (fresh seeds for a "
                         "pre-registered confirmation, or the rest of a registered seed count beside saved ones; "
                         "decomposition_readme.py joins them). Use its own --out")
    ap.add_argument("--quick", action="store_true", help="tiny world, model and grid (< 2 min)")
    ap.add_argument("--world", help="world config JSON (as written by WorldConfig.save)")
    ap.add_argument("--out", default=DEFAULT_OUT, type=out_dir, help="output directory")
    ap.add_argument("--jobs", type=int, default=1,
                    help="compute cells in this many worker processes (on a shared CPU each gets its own slice)")
    add_common(ap)
    ap.add_argument("--consolidations",
                    help="extra base consolidation levels, e.g. 0.5,2 (capacity and behavior_cloning repeat their "
                         "experiment on a base trained that many memorisation-steps past memorising; the "
                         "consolidation axis of issue 9); decomposition takes one level and runs on its bases "
                         "alone. Changes the run's settings: use its own --out")
    ap.add_argument("--widths", help="decomposition: base widths (d_model), e.g. 64,128,256 (default); a run "
                                     "with more widths or seeds extends one with fewer in the same --out")
    ap.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"],
                    help="with --model: auto (default) = bf16 autocast on a GPU that has it, else fp32; fp16 = "
                         "float16 autocast with a loss scaler (CUDA only). The synthetic grids always run fp32")
    add_real_arguments(ap)  # behavior_cloning and localized on a real model: hypotheses/real_world.py
    from interference.cli import finite_float
    ap.add_argument("--lr", type=finite_float,
                    help="with --model: every arm's learning rate (default: chosen before the grid by the rule in "
                         "hypotheses/real_lr.py; recorded in verdict.json either way)")
    ap.add_argument("--counts",
                    help="capacity with --model, or capacity_sweep: the count sweep's numbers of new uuid entities, "
                         "e.g. 8,32,128 (default: its config's); each is asked every kept relation")
    ap.add_argument("--epochs", type=int,
                    help="capacity_sweep: passes over each count's new facts (default: its config's 10); a count's "
                         "steps are epochs x facts / batch")
    ap.add_argument("--leave-out", default="",
                    help="with --model: comma-separated localized arms the data cannot serve (e.g. disjoint); "
                         "recorded in verdict.json")
    return ap


def parse(argv):
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from interference.cli import run_main
    args = parse(argv)
    return run_main(lambda: _main(args))


def _main(args) -> int:
    from interference.hypotheses import EXPERIMENTS, HYPOTHESES
    from interference.hypotheses.context import Context
    from interference.hypotheses.runner import hypothesis_config, run_and_draw
    from interference.io import atomic_write_json as write_json
    from interference.models import ModelError, resolve_device
    from interference.bases import BaseSpec
    from interference.world import WorldConfig, WorldConfigError

    if args.model is not None or args.data is not None:
        return _main_real(args)
    sweep = args.hypothesis == "capacity_sweep"  # the synthetic count sweep takes its counts and budget
    if args.lr is not None or args.leave_out or (args.counts is not None and not sweep):
        flag = '--lr' if args.lr is not None else '--leave-out' if args.leave_out else '--counts'
        raise UsageError(f"{flag} applies to a real model (--model); the synthetic grids' rates, arms and counts are "
                         "part of their pre-registered configs.")
    if args.precision is not None:
        raise UsageError("--precision applies to a real model (--model); the synthetic grids run in float32 so "
                         "every stored cell stays comparable.")
    names = list(HYPOTHESES) if args.hypothesis == "all" else [args.hypothesis]
    if args.hypothesis != "all" and args.hypothesis not in EXPERIMENTS:
        raise UsageError(f"unknown hypothesis {args.hypothesis!r}; choose one of "
                         f"{', '.join(list(EXPERIMENTS) + ['all'])}.")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs} must be at least 1.")
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds} leaves nothing to run; use at least 1 (2+ for a verdict).")
    from interference.io import real_out
    _check_out(real_out(args.out), args.seeds)
    try:
        spec = BaseSpec.default(quick=args.quick)
        if args.world:
            spec = dataclasses.replace(spec, world=WorldConfig.load(args.world))
        device = str(resolve_device(args.device))
    except (WorldConfigError, ModelError) as e:
        raise UsageError(str(e)) from None
    out = real_out(args.out)
    ctx = Context(spec, out, device=device, progress=not args.no_progress, jobs=args.jobs)
    levels = _levels(args.consolidations) if args.consolidations is not None else None
    widths = _widths(args.widths) if args.widths is not None else None
    # all: the levels go to the designs that have a consolidation axis (localized has none)
    takes = lambda n: args.hypothesis != "all" or hasattr(EXPERIMENTS[n].config(args.quick), "consolidations")  # noqa: E731
    cfgs = {n: _config(EXPERIMENTS[n], args.quick, args.seeds, levels if takes(n) else None, widths, args.first_seed)
            for n in names}
    if args.epochs is not None and not sweep:
        raise UsageError(f"--epochs sets capacity_sweep's passes per count; leave it out for {args.hypothesis}.")
    if sweep and (args.counts is not None or args.epochs is not None):
        cfgs[args.hypothesis] = sweep_budget(cfgs[args.hypothesis], args.counts, args.epochs)
    for d in (out, out / "cells", *(out / n for n in names)):
        if d.exists() and not d.is_dir():
            raise UsageError(f"{d} is a file where a directory belongs; choose another --out or move that file.")
    for n in names:  # check every output directory before any work, so a refusal changes nothing
        _check_compatible(out / n, hypothesis_config(EXPERIMENTS[n], cfgs[n], ctx), n)
    from interference.threads import configure_threads
    configure_threads(device)  # one thread on CPU: see interference.threads
    t0 = time.time()
    verdicts = {}
    for n in names:
        verdicts[n] = run_and_draw(EXPERIMENTS[n], cfgs[n], ctx)
        print(format_table(verdicts[n], out / n))
    if args.hypothesis == "all":
        from interference.plots import plot_summary
        summary = {n: {k: v[k] for k in ("verdict", "share", "share_definition", "rule", "seeds")}
                   for n, v in verdicts.items()}
        write_json(out / "summary.json", summary)
        figs = plot_summary(verdicts, out)
        print(f"summary: {out / 'summary.json'}  figure: {figs[0]}")
    print(f"done in {time.time() - t0:.0f}s")
    return 0



def _main_real(args) -> int:
    """behavior_cloning or localized on a real model and data (``hypotheses.real_world``)."""
    from interference.hypotheses.runner import hypothesis_config, run_and_draw
    from interference.hypotheses.real_world import NAMES, prepare
    from interference.real_data import resolve_model_and_data
    real_names = (*NAMES, "capacity")
    if args.hypothesis == "all":
        raise UsageError("all does not run on a given real model (its summary compares the synthetic designs); run "
                         f"{', '.join(real_names)} one at a time with --model.")
    if args.hypothesis not in real_names:
        raise UsageError(f"unknown hypothesis {args.hypothesis!r}; with --model choose one of {', '.join(real_names)}.")
    if args.epochs is not None:
        raise UsageError("--epochs sets the synthetic capacity_sweep's budget; a real model's sweep keeps its config's.")
    counts = _counts(args.counts) if args.counts is not None else None
    if counts is not None and args.hypothesis != "capacity":
        raise UsageError("--counts sets capacity's count sweep; leave it out for behavior_cloning and localized.")
    for flag, given in (("--world", args.world), ("--consolidations", args.consolidations),
                        ("--jobs", args.jobs != 1)):
        if given:
            raise UsageError(f"{flag} does not apply to a real model (it sets the synthetic world, its pre-training "
                             "or parallel workers that would each load the model); leave it out with --model.")
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds} leaves nothing to run; use at least 1 (2+ for a verdict).")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr {args.lr} must be a positive learning rate, e.g. 1e-5.")
    from interference.io import real_out
    _check_out(real_out(args.out), args.seeds)
    spec = resolve_model_and_data(args)  # refuses a bad path, family or data record before any work
    out = real_out(args.out)
    for d in (out, out / "cells", out / args.hypothesis):
        if d.exists() and not d.is_dir():
            raise UsageError(f"{d} is a file where a directory belongs; choose another --out or move that file.")
    from interference.models import resolve_device
    from interference.threads import configure_threads
    device = str(resolve_device(args.device))
    configure_threads(device)  # one thread on CPU: see interference.threads
    t0 = time.time()
    share = args.min_known_share if args.min_known_share is not None else 0.3
    if args.hypothesis == "capacity":
        if args.leave_out:
            raise UsageError("--leave-out names localized arms; capacity's count sweep has none to leave out.")
        if args.first_seed is not None:
            raise UsageError("--first-seed applies to decomposition and localized, not capacity; leave it out.")
        from interference.hypotheses import capacity_sweep
        module, cfg, ctx = capacity_sweep.prepare(spec, out, args.quick, args.seeds, device=device,
                                                  progress=not args.no_progress, min_known_share=share,
                                                  precision=args.precision or "auto", lr=args.lr, counts=counts)
    else:
        module, cfg, ctx = prepare(args.hypothesis, spec, out, args.quick, args.seeds, device=device,
                                   progress=not args.no_progress, min_known_share=share,
                                   precision=args.precision or "auto", lr=args.lr,
                                   leave_out=tuple(a.strip() for a in args.leave_out.split(",") if a.strip()),
                                   first_seed=args.first_seed)
    _check_compatible(out / module.NAME, hypothesis_config(module, cfg, ctx), module.NAME)
    v = run_and_draw(module, cfg, ctx)
    print(format_table(v, out / module.NAME))
    print(f"done in {time.time() - t0:.0f}s")
    return 0


def format_table(v: dict, d: Path) -> str:
    from interference.metrics.stats import format_estimate
    if "verdicts" in v:  # a decomposition: one word per hypothesis and width
        return _format_widths(v, d)
    rows = [("share", v["share"])] + [tuple(r) for r in v.get("headline", [])]
    w = max(len(r[0]) for r in rows)
    # seeds run, not the endpoint's finite values (a seed whose endpoint is undefined still ran)
    lines = [f"{v['hypothesis']}: {v['verdict'].upper()}  ({v.get('seeds', v['share']['n'])} seeds; mean [95% CI])"]
    lines += [f"  {name:<{w}}  {format_estimate(e)}" for name, e in rows]
    lines.append(f"  verdict: {d / 'verdict.json'}   plots: {', '.join(Path(p).name for p in v.get('plots', []))}")
    lines.append(f"  cells: {v['cells']['computed']} computed, {v['cells']['reused']} reused")
    return "\n".join(lines)


def _format_widths(v: dict, d: Path) -> str:
    """The decomposition's table: per width, the excess and each hypothesis' share with its word,
    at equal steps (the endpoint) and at equal learning."""
    from interference.hypotheses.decomposition import SHARES  # hypothesis -> its share's letter
    from interference.metrics.stats import format_estimate
    by = v["series"]["by_width"]
    lines = [f"{v['hypothesis']}: {v['verdict']}  ({v.get('seeds')} seeds; shares of E, mean [95% CI])"]
    for w, words in v["verdicts"].items():
        sh = by[w]["shares"]
        lines.append(f"  d{w}  E = F[sem] - F[drift] {format_estimate(sh['E'])}")
        for h, s in SHARES.items():
            lines.append(f"    {h:<17} {s} {format_estimate(sh[s]):<24} {words['step_matched'][h]:<14}"
                         f"equal learning {format_estimate(sh[s + '_learned']):<24} {words['learning_matched'][h]}")
    for h, e in v["series"]["trend"].items():
        lines.append(f"  {h} share per doubling of width: {format_estimate(e)}")
    lines.append(f"  verdict: {d / 'verdict.json'}   plots: {', '.join(Path(p).name for p in v.get('plots', []))}")
    lines.append(f"  cells: {v['cells']['computed']} computed, {v['cells']['reused']} reused")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
