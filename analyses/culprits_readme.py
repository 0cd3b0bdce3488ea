"""Write the README's culprit-removal and aimed-replay results from the saved verdicts, never by hand.

    python -m interference.run_hypothesis culprits --seeds 5 --out runs/culprits
    python -m interference.run_hypothesis culprits --world analyses/worlds/heldout.json --out runs/culprits_heldout
    python -m interference.run_hypothesis aimed_replay --out runs/aimed_replay
    python analyses/culprits_readme.py [--runs runs/culprits] [--heldout runs/culprits_heldout] [--aimed runs/aimed_replay]

Copies each ``<runs>/<experiment>/verdict.json`` into ``analyses/results/culprits/{default,heldout}.json``
and ``analyses/results/aimed_replay/default.json`` (plots by file name) and renders
``analyses/results/culprits.md`` and ``analyses/results/aimed-replay.md``, which
``analyses/update_readme.py`` puts into the README's CULPRITS and AIMED-REPLAY sections.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interference.io import number  # noqa: E402
from interference.metrics.stats import format_estimate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "culprits"
AIMED = RESULTS / "aimed_replay"
WORLDS = {"default": "Default world", "heldout": "Held-out world (`analyses/worlds/heldout.json`, its own pinned base)"}


def collect(runs: Path, name: str = "default", experiment: str = "culprits", out: Path = OUT) -> None:
    src = runs / experiment / "verdict.json"
    if src.exists():
        out.mkdir(parents=True, exist_ok=True)
        v = json.loads(src.read_text())
        v["plots"] = [Path(p).name for p in v.get("plots", [])]
        (out / f"{name}.json").write_text(json.dumps(v, indent=2, sort_keys=True) + "\n")


def draw(saved: Path, name: str) -> None:
    """The experiment's figure drawn again from its saved verdict (the run's own plot function), as
    ``<name>_<figure>.png`` beside it: any machine redraws it from the numbers in the repository."""
    import tempfile

    from interference.plots import plot_hypothesis
    if not saved.exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        for f in plot_hypothesis(json.loads(saved.read_text()), tmp):
            if f.suffix == ".png":
                shutil.copyfile(f, saved.parent / f"{name}_{f.name}")


def section() -> str | None:
    blocks = [world_block(OUT / f"{w}.json", title) for w, title in WORLDS.items()]
    blocks = [b for b in blocks if b]
    if not blocks:
        return None
    missing = [title.split(" (")[0].lower() for w, title in WORLDS.items() if not (OUT / f"{w}.json").exists()]
    tail = f"\n\nNot run yet: the {', '.join(missing)}." if missing else ""
    return "\n\n".join(blocks) + tail


def world_block(f: Path, title: str) -> str | None:
    if not f.exists():
        return None
    v = json.loads(f.read_text())
    head = {k: e for k, e in [tuple(r) for r in v["headline"]]}
    g = lambda k: format_estimate(head[k]) if k in head else "n/a"  # noqa: E731
    lines = [f"**{title}, {v['seeds']} seeds** (pre-registered, hash `{v['preregistered']['hash']}`; pinned base "
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
              f"{g('rescue of at-risk facts: random replay')} for random replay (the budget sweep, fragile replay "
              "and self-distillation are the aimed-replay experiment below)."]
    st = v["statistics"]
    few = number(st.get("n_forgotten_targets", {}).get("value"))
    if few < 3:
        lines += ["", f"**Too few forgotten targets to decide.** At equal learning (step "
                  f"{format_estimate(st['learned_step_full'])}) plain SFT had forgotten only "
                  f"{format_estimate(st['n_forgotten_targets'])} of the at-risk targets per seed on this base, so each "
                  "seed's rescue rate is a share of one or two facts and the endpoint's interval spans both words; the "
                  "step-matched read below, where SFT has forgotten more, is secondary and decides nothing."]
    sm = lambda k: format_estimate(st[k]) if k in st else "n/a"  # noqa: E731
    lines += ["", f"At equal steps (all {v['series']['steps']} updates; secondary): plain SFT forgot "
              f"{sm('n_forgotten_targets_step_matched')} targets per seed (at equal learning "
              f"{sm('n_forgotten_targets')}, learned at step {sm('learned_step_full')}); culprit removal rescues "
              f"{sm('rescue_culprits_targets_step_matched')} of them, random removal "
              f"{sm('rescue_random_targets_step_matched')}, fragility-aimed removal "
              f"{sm('rescue_fragility_targets_step_matched')}; targeted replay rescues "
              f"{sm('rescue_replay_targeted_at_risk_step_matched')} of the at-risk facts, random replay "
              f"{sm('rescue_replay_random_at_risk_step_matched')}."]
    return "\n".join(lines)


BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "fix_cost.json"


def cost_sentence() -> str:
    """What each fix costs, from the benchmark's JSON (CPU seconds: the wall time of a shared machine
    measures its load)."""
    if not BENCH.exists():
        return "Cost per step: not measured yet (`python benchmarks/fix_cost.py`)."
    b = json.loads(BENCH.read_text())
    c = lambda k: b[k]["cpu_seconds_per_step"]  # noqa: E731
    return (f"Cost per training step (`benchmarks/results/fix_cost.json`, CPU seconds on {b['threads']} thread, d128, "
            f"batch {b['batch_size']}): plain SFT {c('sft'):.3f}, SFT + 5% replay {c('replay_targeted_5pct'):.3f} "
            f"({b['replay_over_sft_cpu']:.2f}x: the same batch), self-distillation {c('self_distill'):.3f} "
            f"({b['self_distill_over_sft_cpu']:.2f}x: the teacher's forward pass); aiming the replay costs once "
            f"{b['aiming_once']['cpu_seconds']:.0f} CPU s (forecast + culprits of {b['aiming_once']['n_watched']} "
            f"watched facts in {b['aiming_once']['n_sft']} SFT facts), "
            f"about {b['aiming_once']['cpu_seconds'] / c('sft'):.0f} SFT steps' worth.")


def aimed_section() -> str | None:
    f = AIMED / "default.json"
    if not f.exists():
        return None
    v = json.loads(f.read_text())
    st, ps = v["statistics"], v["per_seed"]
    head = {k: e for k, e in [tuple(r) for r in v["headline"]]}
    fe = lambda k: format_estimate(st[k]) if k in st else "n/a"  # noqa: E731
    lines = [f"**Default world, {v['seeds']} seeds** (pre-registered, hash `{v['preregistered']['hash']}`; pinned base "
             f"`{', '.join(sorted(set(v['base_fingerprints'].values())))}`; the same SFT sets, watched facts and "
             f"forecast as the culprit removal above): **`{v['verdict']}`**, D = Rec(targeted) - Rec(fragile) at a 5% "
             f"budget = {format_estimate(v['endpoint'])}. The issue's goal (targeted replay of 5% of the set's size "
             "recovers at least half of SFT's excess forgetting and at least twice what random replay of that budget "
             f"does, new facts still learned) is {'met' if v.get('goal_met') else 'not met'}.", "",
             "Rec = share of SFT's excess forgetting (plain SFT minus Known-only drift, all watched facts the base "
             "knew) that the arm removes (ratio of seed means, 95% CI), read where each arm learned its new facts "
             "(the endpoint's read) and after all steps:", "",
             "| arm | Rec, equal learning | Rec, equal steps | learned at step |", "|---|---|---|---|"]
    for arm in [a for a in v["series"]["arms"] if a not in ("full", "drift")]:
        lines.append(f"| {arm.replace('_', ' ')} | {fe('rec_' + arm)} | {fe('rec_' + arm + '_step_matched')} | "
                     f"{fe('learned_step_' + arm)} |")
    lines.append(f"| plain SFT (full) | 0 | 0 | {fe('learned_step_full')} |")
    lines += ["", "| read-out | mean [95% CI] |", "|---|---|"]
    lines += [f"| {k} | {format_estimate(e)} |" for k, e in head.items() if not k.startswith("Rec: ")]  # in the table
    from interference.hypotheses.aimed_replay import PRIMARY_BUDGET, arm_name
    t5, r5, f5 = (arm_name(o, PRIMARY_BUDGET) for o in ("targeted", "random", "fragile"))
    lines += ["", "**What it says.** Aimed by the forecast, a 5% replay removes "
              f"{fe('rec_' + t5)} of SFT's excess forgetting at equal learning ({fe('rec_' + t5 + '_step_matched')} at "
              f"equal steps), {'more' if number(st['D_vs_random']['low']) > 0 else 'not clearly more'} than random replay "
              f"of that budget ({fe('rec_' + r5)}), and "
              f"{'more' if number(v['endpoint']['low']) > 0 else 'not clearly more'} than replaying the most fragile "
              f"facts ({fe('rec_' + f5)})"
              + (": the endpoint cannot tell the forecast from the trivial baseline here" if number(v['endpoint']['low']) <= 0 else "")
              + ". Two things hold it down. Replay dilutes the "
              f"new facts, so the replay arms learn them later (step {fe('learned_step_' + t5)} against "
              f"{fe('learned_step_full')}) and are read after more updates. And rehearsal saves the facts it rehearses, "
              "not their neighbours: on the watched facts no arm replayed, recovery is "
              f"{fe('rec_never_replayed_' + t5)} (targeted) and {fe('rec_never_replayed_' + r5)} "
              "(random). Self-distillation, which rehearses no fact, removes "
              f"{fe('rec_self_distill')} at equal learning and {fe('rec_never_replayed_self_distill')} on the "
              f"never-replayed facts, learning the new facts by step {fe('learned_step_self_distill')}.", ""]
    lines += [f"Self-distillation (no replay) recovers {fe('rec_self_distill')} of the same excess. "
              + cost_sentence() + " The curation route (drop the culprits, the removal experiment above) costs "
              f"{fe('curation_new_dropped')} new facts of the set per seed ({fe('curation_new_dropped_share')} of "
              "them), which that arm then never learns."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/culprits"))
    ap.add_argument("--heldout", type=Path, default=Path("runs/culprits_heldout"))
    ap.add_argument("--aimed", type=Path, default=Path("runs/aimed_replay"))
    args = ap.parse_args(argv)
    collect(args.runs)
    collect(args.heldout, "heldout")
    collect(args.aimed, "default", "aimed_replay", AIMED)
    for saved in (OUT / "default.json", OUT / "heldout.json", AIMED / "default.json"):
        draw(saved, saved.stem)
    wrote = 0
    for name, body in (("culprits", section()), ("aimed-replay", aimed_section())):
        if body is not None:
            (RESULTS / f"{name}.md").write_text(body + "\n")
            print(f"wrote {RESULTS / (name + '.md')}")
            wrote += 1
    if not wrote:
        print("no saved culprits or aimed-replay verdict; run the commands in this script's docstring first.",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
