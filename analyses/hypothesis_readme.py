"""Write the README section on the three hypotheses from saved verdicts, never by hand.

    python -m interference.run_hypothesis capacity --seeds 5                      # the runs
    python -m interference.run_hypothesis capacity --seeds 3 --world analyses/worlds/heldout.json \
        --out runs/hypotheses_heldout
    python -m interference.run_hypothesis behavior_cloning --seeds 3 --consolidations 0.5,2 \
        --out runs/hypotheses_consolidation
    python analyses/hypothesis_readme.py [--runs runs/hypotheses] [--heldout-runs runs/hypotheses_heldout] \
        [--consolidation-runs runs/hypotheses_consolidation]

Each verdict found under ``--runs`` / ``--heldout-runs`` is first copied into
``analyses/results/verdicts/{default,heldout}/<hypothesis>.json`` (so the numbers stay in the
repository), then the section is rendered from those copies and from the previous verdicts in
``analyses/results/verdicts/previous/`` into ``analyses/results/hypotheses.md``. Per hypothesis:
the question, the pre-registered endpoint with each hypothesis' prediction and the rule (read
from the verdict's ``preregistered`` record, with its hash), the measured numbers (mean [95% CI]
over seeds), the verdict, the held-out world's verdict (a flip is said so), the previous verdict
and how it compares with the paper.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interference.metrics.stats import format_estimate  # noqa: E402
from analyses.loop_rerun import load_pair, summary  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VERDICTS = RESULTS / "verdicts"
NAMES = ("capacity", "behavior_cloning", "localized")
MIN_SEEDS = 5
QUESTIONS = {
    "capacity": "Does SFT forget because the model has no room for the new facts beside the old ones?",
    "behavior_cloning": "Does SFT on Unknown facts teach the model to answer without knowing, whatever the facts "
                        "are about?",
    "localized": "Does SFT forget the existing facts whose representations the new ones overlap?",
}
# What the paper reports for each hypothesis (its claims, not our numbers), to set ours against.
PAPER = {
    "capacity": "The paper finds forgetting nearly flat in the number of new facts when their keys are uuids "
                "(0-4% up to 1M facts on a 1.5B model), so it rejects capacity as the driver.",
    "behavior_cloning": "The paper argues against behavior cloning as the main cause: facts with uuid keys, "
                        "Unknown just as much, barely harm existing knowledge.",
    "localized": "The paper's explanation: new facts overwrite the existing facts whose representations they "
                 "overlap (semantic keys), and self-distillation reduces that interference.",
}
# The verdict each hypothesis gets in the paper's account (our verdict words), and the measure of
# ours that says how far the tiny model is from it when the two differ.
PAPER_VERDICT = {"capacity": "not_supported", "behavior_cloning": "not_supported", "localized": "main_driver"}
DIFFERENCE = {
    "capacity": ("excess SFT forgetting per doubling of facts/parameter",
                 "forgetting of uuid-key facts still rises with facts per parameter on this small model"),
    "behavior_cloning": ("rise H[unknown] - H[known]", "Unknown facts raise confident errors on unrelated known facts"),
    "localized": ("share2 excess share of target forgetting",
                  "look-alike keys concentrate damage on their targets, but the excess share of the targets' "
                  "forgetting has a lower bound under the 0.5 the rule asks of a main driver"),
}
PATCH_OWN, PATCH_CONTROL = ("patching L1: own base state restores (share2 targets)",
                            "patching L1: other entity's state (control)")


def paper_comparison(name: str, v: dict) -> str:
    """One plain sentence: does our verdict match the paper's account, and by which measure it differs.
    Written from the verdict, so a re-run that moves the numbers moves the sentence."""
    head = {label: e for label, e in [tuple(r) for r in v.get("headline", [])]}
    want, ours = PAPER_VERDICT[name], v["verdict"]
    if ours == want:
        out = f"Ours agrees: `{ours}`."
    else:
        label, what = DIFFERENCE[name]
        out = (f"Ours differs: `{ours}` where the paper's account implies `{want}`; {what}"
               + (f" ({label}: {format_estimate(head[label])})." if label in head else "."))
    if name == "localized" and PATCH_OWN in head and PATCH_CONTROL in head:
        own, ctl = head[PATCH_OWN], head[PATCH_CONTROL]
        if own["low"] <= ctl["high"]:  # the intervals overlap (this includes own mean <= control mean)
            out += (f" Activation patching does not single out the overlapping state: restoring a forgotten target's "
                    f"own base subject state at layer 1 recovers {format_estimate(own)} of them, a control entity's "
                    f"state {format_estimate(ctl)}.")
    sft, sd = head.get("targets - rest, share2"), head.get("targets - rest, share2_distill")
    if name == "localized" and sft and sd:
        out += (f" Self-distillation, the paper's fix, shrinks the targeted damage (targets - rest with two shared "
                f"pieces: {format_estimate(sft)} under SFT, {format_estimate(sd)} under self-distillation).")
    return out


def collect(runs: Path | None, label: str) -> None:
    """Copy the verdicts found under ``runs`` into the repository's results."""
    if runs is None:
        return
    for n in NAMES:
        src = runs / n / "verdict.json"
        if src.exists():
            dst = VERDICTS / label / f"{n}.json"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


def load(label: str, name: str) -> dict | None:
    p = VERDICTS / label / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _verdict_line(v: dict) -> str:
    e = v.get("endpoint", v["share"])
    n = e.get("n", 0)
    return (f"**`{v['verdict']}`** (endpoint {format_estimate(e)}, mean [95% CI] over {n} seeds"
            + (f"; fewer than {MIN_SEEDS} seeds, preliminary" if n < MIN_SEEDS else "") + ")")


def section(name: str) -> str:
    v, held, prev = load("default", name), load("heldout", name), load("previous", name)
    lines = [f"### {name.replace('_', ' ')}", "", f"**Question.** {QUESTIONS[name]}", ""]
    if v is None:
        return "\n".join(lines + [f"*Not run yet:* `python -m interference.run_hypothesis {name} --seeds "
                                  f"{MIN_SEEDS}`.", ""])
    pre = v.get("preregistered")
    if pre:
        lines += [f"**Pre-registered endpoint** (hash `{pre['hash']}`). {pre['endpoint']}", "",
                  "| hypothesis | predicted |", "|---|---|"]
        lines += [f"| {h.replace('_', ' ')} | {p} |" for h, p in pre["predictions"].items()]
        lines += ["", f"Rule: {pre['rule']}", ""]
    else:
        lines += ["*This verdict was computed before endpoints were pre-registered.*", ""]
    lines += [f"**Verdict on the default world:** {_verdict_line(v)}.", "", "| measure | mean [95% CI] |", "|---|---|"]
    lines += [f"| {label} | {format_estimate(e)} |" for label, e in [tuple(r) for r in v.get("headline", [])]]
    checks = v.get("checks", {})
    if checks:
        lines += ["", "Checks: " + "; ".join(f"{k}: {'pass' if ok else 'FAIL'}" for k, ok in checks.items()) + "."]
    lines.append("")
    if held is not None:
        same = held["verdict"] == v["verdict"]
        lines += [f"**Held-out world** (another seed, 6 relations, 60 values, 1,500 entities): {_verdict_line(held)}"
                  + (" - the same verdict." if same else f" - **the verdict flips** (default world: `{v['verdict']}`)."),
                  ""]
    else:
        lines += ["**Held-out world:** not run (time); `--world analyses/worlds/heldout.json` runs it.", ""]
    cons = load("consolidation", name)
    if cons is not None:
        rows = [(lab, e) for lab, e in [tuple(r) for r in cons.get("headline", [])] if "at consolidation" in lab]
        e = cons.get("endpoint", cons["share"])
        lines += [f"**Consolidation axis** (the same experiment on bases trained 0.5x and 2x as many steps past "
                  f"memorising as the default's 1x; {e.get('n', 0)} seeds; not a verdict, a trend): "
                  f"endpoint at the default level {format_estimate(e)}; "
                  + "; ".join(f"{lab.split('at consolidation ')[1]}: {format_estimate(v)}" for lab, v in rows) + ".", ""]
    if prev is not None:
        lines += [f"**Previous verdict** (one key-style ratio shared by all three hypotheses, not pre-registered): "
                  f"`{prev['verdict']}`, share {format_estimate(prev['share'])} over {prev['share'].get('n')} seeds. "
                  + ("Unchanged in word" if prev["verdict"] == v["verdict"] else "**Changed**")
                  + "; the numbers measure different things (see the endpoint above).", ""]
    lines += [f"**Against the paper.** {PAPER[name]} {paper_comparison(name, v)}", ""]
    lines += [f"Figure: `{name}/{name}.png`.", ""]
    return "\n".join(lines)


def loop_table() -> list[str]:
    """Old loop vs the one loop (issue 8), on the same seeds: what moving the grids did to each verdict."""
    rows = []
    for n in NAMES:
        old, new = load_pair(n)
        if new is not None:
            r = summary(n, old, new)
            rows.append(f"| {n.replace('_', ' ')} | {len(r['seeds'])} | `{r['old_verdict_on_seeds']}`, "
                        f"{format_estimate(r['old_share'])} | `{r['new_verdict']}`, {format_estimate(r['new_share'])} |")
    if not rows:
        return []
    return ["#### Before the redesign: the old grids moved onto the one training loop", "",
            "The previous (not pre-registered) share statistic, old loop vs the one loop, on the same seeds; "
            "the schedule, the last partial batch, the format teacher and a re-pre-trained base changed at once "
            "(details: `analyses/results/loop_rerun.md`, made by `analyses/loop_rerun.py`).", "",
            "| hypothesis | seeds | old loop: verdict, share | one loop: verdict, share |", "|---|---|---|---|",
            *rows, ""]


def render() -> str:
    out = ["## Why does SFT make the model forget? Three hypotheses, tested", "",
           "Generated by `analyses/hypothesis_readme.py` from `analyses/results/verdicts/*/*.json` (copied from "
           "`runs/hypotheses*/<hypothesis>/verdict.json`). Each hypothesis has its own pre-registered experiment "
           "and endpoint, whose outcome the three hypotheses predict differently; a verdict is decided by its rule "
           "on a 95% t-interval over seeds.", ""]
    out += [section(n) for n in NAMES]
    out += loop_table()
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/hypotheses", help="verdicts on the default world")
    ap.add_argument("--heldout-runs", default="runs/hypotheses_heldout", help="verdicts on the held-out world")
    ap.add_argument("--consolidation-runs", default="runs/hypotheses_consolidation",
                    help="verdicts of `run_hypothesis NAME --consolidations 0.5,2` on the default world")
    ap.add_argument("--out", default=str(RESULTS / "hypotheses.md"))
    a = ap.parse_args(argv)
    from interference.io import atomic_write_text
    collect(Path(a.runs), "default")
    collect(Path(a.heldout_runs), "heldout")
    collect(Path(a.consolidation_runs), "consolidation")
    atomic_write_text(a.out, render())
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
