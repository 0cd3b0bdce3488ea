"""Old loop vs the one loop: the hypothesis verdicts before and after issue 8, from saved verdicts.

    python -m interference.run_hypothesis all --seeds 3 --out runs/hypotheses_loop
    python analyses/loop_rerun.py [--new runs/hypotheses_loop] [--out analyses/results/loop_rerun.md]

The new verdicts are copied to ``analyses/results/loop_rerun/verdict_<h>.json`` (``runs/`` is not
kept in git), and read from there when ``--new`` does not hold them.

Old numbers: ``analyses/results/verdicts/previous/<h>.json`` (the README's runs, 5 seeds), restricted to the
seeds the new run has, so both sides average the same seeds. New numbers: ``<new>/<h>/verdict.json``.
What changed between them (all of it, so a moved number is not pinned on one cause):

- batches: epoch permutations with the last partial batch kept (the grids dropped it);
- schedule: 5% linear warm-up then cosine decay over ``max_steps`` (the grids used a constant lr);
- the base: re-pre-trained by the same loop (its pre-training had dropped each epoch's last partial
  batch), so every forgetting rate is measured on a different set of known facts;
- localized's self-distillation arm: KL to the format teacher (base + one epoch of Known SFT), not
  to the base itself.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interference.hypotheses.prereg import decide  # noqa: E402
from interference.metrics.stats import estimate, format_estimate

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "analyses" / "results" / "verdicts" / "previous"
KEEP = ROOT / "analyses" / "results" / "loop_rerun"
KEYS = {
    "localized": ["share", "forgetting_lookalike_all", "forgetting_uuid_all", "forgetting_lookalike_distill_all",
                  "targeting_share", "plasticity_lookalike_distill", "drift_lookalike", "drift_lookalike_distill",
                  "slope_sft", "slope_distill", "steps_lookalike", "steps_lookalike_distill"],
    "behavior_cloning": ["share", "forgetting_uuid", "forgetting_semantic", "plasticity_uuid", "plasticity_semantic",
                         "steps_uuid", "steps_semantic"],
    "capacity": ["share", "forgetting_uuid", "forgetting_semantic", "drift_control_forgetting", "joint_forgetting",
                 "joint_plasticity", "uuid_forgetting_ratio_large_over_small"],
}


def _stat(per_seed: list[dict], key: str, seeds: set[int]) -> dict:
    return estimate([p.get(key) for p in per_seed if p["seed"] in seeds and p.get(key) is not None])


def summary(name: str, old: dict, new: dict) -> dict:
    """Old and new verdict and share on the seeds the new run has: one row of the README's table."""
    seeds = {p["seed"] for p in new["per_seed"]}
    old_share = _stat(old["per_seed"], "share", seeds)
    return {"name": name, "seeds": sorted(seeds), "old_verdict": old["verdict"], "old_share": old_share,
            "old_verdict_on_seeds": decide(old_share["value"], (old_share["low"], old_share["high"]),
                                           n_seeds=old_share["n"]),
            "new_verdict": new["verdict"], "new_share": new["share"]}


def load_pair(name: str, old_dir: Path = OLD, keep: Path = KEEP) -> tuple[dict, dict | None]:
    """(old verdict, new-loop verdict or None) as kept in the repository."""
    old = json.loads((old_dir / f"{name}.json").read_text())
    kept = keep / f"verdict_{name}.json"
    return old, (json.loads(kept.read_text()) if kept.exists() else None)


def compare(name: str, old: dict, new: dict | None) -> list[str]:
    lines = [f"## {name}", ""]
    if new is None:
        return lines + ["Not re-run on the new loop yet.", ""]
    row = summary(name, old, new)
    seeds, old_on_seeds = set(row["seeds"]), row["old_verdict_on_seeds"]
    if len(seeds) < 3:
        lines += [f"Re-run at {len(seeds)} seeds only: three did not fit the session's time on the shared CPU.", ""]
    lines += [f"- verdict, old loop: **{old['verdict']}** ({old['share']['n']} seeds, share "
              f"{format_estimate(old['share'])}); on seeds {sorted(seeds)} alone the share rule gives "
              f"{old_on_seeds} (required checks not re-evaluated)",
              f"- verdict, new loop: **{new['verdict']}** ({new['share']['n']} seeds, share "
              f"{format_estimate(new['share'])}); checks: "
              + ", ".join(f"{k}: {'pass' if v else 'FAIL'}" for k, v in new.get("checks", {}).items()), "",
              f"| statistic (mean [95% CI], seeds {sorted(seeds)}) | old loop | new loop |", "|---|---|---|"]
    for k in KEYS[name]:
        lines.append(f"| {k} | {format_estimate(_stat(old['per_seed'], k, seeds))} | "
                     f"{format_estimate(_stat(new['per_seed'], k, seeds))} |")
    fp = new.get("base_fingerprints", {})
    lines += ["", f"New run's base weights: {', '.join(f'{h} -> {f}' for h, f in fp.items()) or 'n/a'}.", ""]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--new", default="runs/hypotheses_loop")
    ap.add_argument("--old", default=str(OLD))
    ap.add_argument("--out", default=str(ROOT / "analyses" / "results" / "loop_rerun.md"))
    ap.add_argument("--keep", default=str(KEEP))
    args = ap.parse_args(argv)
    lines = ["# Hypothesis grids: old loop vs the one loop (issue 8)", "",
             "Generated by `python analyses/loop_rerun.py` from saved verdicts; do not edit by hand.", "",
             __doc__.split("\n\n", 2)[2].split("\n\"\"\"")[0].strip(), ""]
    for name in KEYS:
        path, kept = Path(args.new) / name / "verdict.json", Path(args.keep) / f"verdict_{name}.json"
        if path.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, kept)
        old, new = load_pair(name, Path(args.old), Path(args.keep))
        lines += compare(name, old, new)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
