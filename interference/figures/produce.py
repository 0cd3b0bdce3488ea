"""``--produce``: run the commands that write the results some figures read, when they are missing.

By default a figure drawn from another command's output (hypothesis verdicts, the forecast) is
skipped with one sentence naming that command: those commands own their grids and can take an
hour on the default world. ``--produce`` runs them here instead, through their own CLIs'
``main(argv)`` (so their caches, refusals and messages are theirs), which makes
``python -m interference.figures --quick --produce`` build every figure from nothing.
"""
from __future__ import annotations

from pathlib import Path

from interference.figures.runs import MissingInput

# figure -> (the config field naming the runner's --out, the designs it reads; None: the config's list)
HYPOTHESIS_FIGURES = {"capacity": ("hypotheses_dir", ("capacity",)), "localized": ("hypotheses_dir", ("localized",)),
                      "hypotheses": ("hypotheses_dir", None),
                      "decomposition": ("decomposition_dir", ("decomposition",))}


def missing_hypotheses(cfgs: dict) -> dict[str, list[str]]:
    """{runner --out: [names]} whose verdict.json the chosen figures need and do not find."""
    out: dict[str, list[str]] = {}
    for fig, cfg in cfgs.items():
        field, names = HYPOTHESIS_FIGURES.get(fig, (None, None))
        if field is None or not hasattr(cfg, field):
            continue
        d = getattr(cfg, field)
        for n in names or tuple(getattr(cfg, "hypotheses", ())):
            if not (Path(d) / n / "verdict.json").exists():
                out.setdefault(d, [])
                if n not in out[d]:
                    out[d].append(n)
    return out


def produce(cfgs: dict, ctx, progress: bool = False, jobs: int = 1) -> list[str]:
    """Run the missing producers; returns one line per command run (or why it could not be).
    ``jobs`` is handed to the hypothesis runner, whose cells are independent processes as the
    figures' runs are (on 2 cores, two at a time halves the longest step of a --produce build)."""
    from interference.hypotheses.runner import run  # imports every design: only when one must run
    done = []
    for hyp_dir, names in missing_hypotheses(cfgs).items():
        for n in names:
            argv = [n, "--out", str(hyp_dir)] + (["--quick"] if ctx.quick else []) + ([] if progress else ["--no-progress"])
            argv += ["--jobs", str(jobs)] if jobs > 1 else []
            v = run(n, quick=ctx.quick, out=hyp_dir, device=getattr(ctx, "device", None), progress=progress, jobs=jobs)
            done.append(f"python -m interference.run_hypothesis {' '.join(argv)}: {v['verdict']}")
    fc = cfgs.get("forecast")
    if fc is not None and not (Path(fc.forecast_dir) / "forecast.json").exists():
        done.append(_forecast(fc, ctx, progress))
    return done


def _forecast(cfg, ctx, progress: bool = False) -> str:
    try:
        from interference.forecast.cli import main as forecast_main
    except ImportError:
        return "forecast: interference.forecast is not part of this installation; its figure stays skipped"
    from interference.figures.config import ArmsConfig, load_config
    curves = load_config(ArmsConfig, "curves", ctx.quick)
    sft = next((a for a in curves.arms if a.method == "sft" and not a.options), None)
    if sft is None:
        raise MissingInput("the curves config has no plain SFT arm whose SFT set the forecast could score.")
    run = ctx.cache.get(sft, 0, curves.run)
    argv = ["--sft-data", str(run.out), "--evaluate", "--seeds", str(max(2, curves.seeds)), "--out", str(cfg.forecast_dir)]
    argv += [] if progress else ["--no-progress"]  # the forecast shows bars by default now, like every command
    rc = forecast_main(argv)
    return f"python -m interference.forecast {' '.join(argv)}: exit {rc}"
