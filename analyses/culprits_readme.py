"""Write the README's culprit-removal results from the saved verdict, never by hand.

    python -m interference.run_hypothesis culprits --seeds 5 --out runs/culprits
    python analyses/culprits_readme.py [--runs runs/culprits]

Copies ``<runs>/culprits/verdict.json`` into ``analyses/results/culprits/default.json`` (plots by
file name) and renders ``analyses/results/culprits.md``, which ``analyses/update_readme.py`` puts
into the README's CULPRITS section.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interference.io import number  # noqa: E402
from interference.metrics.stats import format_estimate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "culprits"


def collect(runs: Path) -> None:
    src = runs / "culprits" / "verdict.json"
    if src.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        v = json.loads(src.read_text())
        v["plots"] = [Path(p).name for p in v.get("plots", [])]
        (OUT / "default.json").write_text(json.dumps(v, indent=2, sort_keys=True) + "\n")


def section() -> str | None:
    f = OUT / "default.json"
    if not f.exists():
        return None
    v = json.loads(f.read_text())
    head = {k: e for k, e in [tuple(r) for r in v["headline"]]}
    g = lambda k: format_estimate(head[k]) if k in head else "n/a"  # noqa: E731
    lines = [f"**Default world, {v['seeds']} seeds** (pre-registered, hash `{v['preregistered']['hash']}`; pinned base "
             f"`{', '.join(sorted(set(v['base_fingerprints'].values())))}`): **`{v['verdict']}`**, "
             f"E = rescue[culprits](T) - rescue[random](T) = {format_estimate(v['endpoint'])}. "
             f"The issue's goal (culprit removal rescues at least half of the forgotten at-risk facts and at least twice "
             f"what random removal does) is {'met' if v.get('goal_met') else 'not met'}.", "",
             "| read-out (equal learning) | mean [95% CI] |", "|---|---|"]
    lines += [f"| {k} | {format_estimate(e)} |" for k, e in head.items()]
    lines += ["", "Removing the forecast's culprits (at most 5% of the set) rescues "
              f"{g('rescue of targets: culprits removed')} of the at-risk facts SFT forgets, against "
              f"{g('rescue of targets: random removed')} for as many random examples and "
              f"{g('rescue of targets: fragility-aimed removal')} for removal aimed by fragility alone"
              + (", at no measurable cost to the other facts (collateral forgetting "
                 f"{g('collateral forgetting, culprits arm')})" if number(head.get('collateral forgetting, culprits arm', {}).get('low')) <= 0 else
                 f", with collateral forgetting {g('collateral forgetting, culprits arm')}")
              + (": specific examples cause specific forgetting, which is what localized interference predicts and "
                 "capacity and behavior cloning do not" if v["verdict"] in ("contributes", "main_driver") else "")
              + ". Replaying the at-risk facts "
              f"(the same budget) rescues {g('rescue of at-risk facts: targeted replay')} of them against "
              f"{g('rescue of at-risk facts: random replay')} for random replay. Not run yet: the held-out world, "
              "the replay budget sweep, the self-distillation comparison and cost per step."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/culprits"))
    args = ap.parse_args(argv)
    collect(args.runs)
    body = section()
    if body is None:
        print("no saved culprits verdict; run the command in this script's docstring first.", file=sys.stderr)
        return 2
    (RESULTS / "culprits.md").write_text(body + "\n")
    print(f"wrote {RESULTS / 'culprits.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
