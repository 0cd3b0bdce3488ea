"""Save what a real-model hypothesis run on the committed fixture measured, for the docs.

    python analyses/real_fixture.py RUN_DIR/localized --seconds 1234 --command "python -m ..."

Reads ``verdict.json`` of one run (``run_hypothesis NAME --model tests/fixtures/knowing/model
--data tests/fixtures/knowing/data``) and writes ``analyses/results/real_fixture/NAME.json``: the
verdict, endpoint, required checks, the learning-rate record, Known-only drift, the adapted
counts, the headline rows and the wall time given (measured outside the run, which does not know
how long it waited for the CPU). ``analyses/update_readme.py`` renders the docs' table from these
files, so no number in it is typed by hand.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "analyses" / "results" / "real_fixture"


def record(v: dict, seconds: float | None, command: str, load: list[float] | None = None) -> dict:
    cfg = v.get("config", {})
    counts = {k: cfg[k] for k in ("n_targets", "count", "small_count", "counts", "steps", "epochs") if k in cfg}
    return {"hypothesis": v["hypothesis"], "design": v.get("design"), "verdict": v["verdict"],
            "endpoint": v["share"], "endpoint_definition": v.get("share_definition"), "rule": v.get("rule"),
            "checks": v.get("checks", {}), "seeds": v.get("seeds"), "learning_rate": v.get("learning_rate"),
            "known_only_drift": v.get("known_only_drift"),
            "known_only_drift_matched": v.get("known_only_drift_matched"), "seeds_by_arm": v.get("seeds_by_arm"),
            "left_out_arms": v.get("left_out_arms"),
            "watched_forgetting_by_arm": v.get("watched_forgetting_by_arm"), "counts": counts,
            "headline": v.get("headline", []), "cells": v.get("cells"), "wall_seconds": seconds,
            "load_average_1min_end": load, "command": command,
            "preregistered_hash": (v.get("preregistered") or {}).get("hash"), "base_hash": v.get("base_hash"),
            "config": cfg}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="the hypothesis directory holding verdict.json")
    ap.add_argument("--seconds", type=float, help="wall time of the command, measured outside it")
    ap.add_argument("--command", required=True, help="the command that made the run, as a reader would type it")
    ap.add_argument("--name", help="save as NAME.json (default: the hypothesis; localized_confirm for the "
                                   "fresh-seed confirmation of docs/localized_fixture_confirmation.md)")
    ap.add_argument("--note", help="what a reader must know about the run, saved with it")
    args = ap.parse_args(argv)
    v = json.loads((Path(args.run) / "verdict.json").read_text())
    rec = record(v, args.seconds, args.command, [round(x, 2) for x in os.getloadavg()])
    OUT.mkdir(parents=True, exist_ok=True)
    if args.note:
        rec["note"] = args.note
    name = args.name or v["hypothesis"] + ("_sweep" if v.get("design") == "count_sweep" else "")
    (OUT / f"{name}.json").write_text(json.dumps(rec, indent=1) + "\n")
    print(f"wrote {OUT / (name + '.json')}: {rec['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
