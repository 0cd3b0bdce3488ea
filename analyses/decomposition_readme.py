"""Write the README's decomposition section from saved verdicts, never by hand.

    python -m interference.run_hypothesis decomposition --widths 64,128 --seeds 5 --out runs/decomposition
    python -m interference.run_hypothesis decomposition --widths 128 --seeds 5 \
        --world analyses/worlds/heldout.json --out runs/decomposition_heldout
    python -m interference.run_hypothesis decomposition --widths 64 --seeds 3 --jobs 2 --out runs/demo   # the demo
    python analyses/decomposition_readme.py [--runs runs/decomposition] [--heldout-runs ...] [--demo-runs runs/demo]
    python -m interference.run_hypothesis decomposition --widths 256 --seeds 3 --out runs/decomposition_d256
    python analyses/decomposition_readme.py --join-default runs/decomposition_d256   # add its width to the saved one

Each verdict found is first copied into ``analyses/results/decomposition/{default,heldout,demo}.json``
(so the numbers stay in the repository), then ``analyses/results/decomposition.md`` is rendered from
those copies and from the registered verdicts in ``analyses/results/verdicts/default/``: per width,
the excess E and each hypothesis' share with its word at equal steps (the endpoint) and at equal
learning; the trend with width; the registered designs' words beside them; and where ours differs
from the paper. ``analyses/update_readme.py`` then puts the section into the README.

``--join-default RUNS`` (``--join-heldout RUNS``) adds the widths of another run of the same
pre-registration to the saved verdict (``decomposition.join_verdicts``: recomputed from both runs'
per-seed rows), so a width run later, on another machine, joins the widths whose cells are gone.
"""
from __future__ import annotations

import argparse
import math
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interference.hypotheses import decomposition as dec  # noqa: E402
from interference.io import number  # noqa: E402
from interference.metrics.stats import format_estimate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "decomposition"
SWEEP = RESULTS / "capacity_sweep"
SHARES = tuple((h, s, "({} - {}) / E".format(*(f"F[{t[2:]}]" for t in dec.TERMS[s]))) for h, s in dec.SHARES.items())
REGISTERED_SEEDS = 8
PAPER = {"localized": "main_driver", "capacity": "not_supported", "behavior_cloning": "not_supported"}


def collect(runs: Path | None, label: str) -> None:
    if runs is None:
        return
    src = runs / "decomposition" / "verdict.json"
    if src.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        v = json.loads(src.read_text())
        v["plots"] = [Path(p).name for p in v.get("plots", [])]  # names, not this machine's paths
        (OUT / f"{label}.json").write_text(json.dumps(v, indent=2, sort_keys=True) + "\n")


def join(runs: Path | None, label: str) -> None:
    if runs is None:
        return
    src = runs / "decomposition" / "verdict.json"
    base = load(label)
    if base is None or not src.exists():
        raise SystemExit(f"nothing to join: {'the saved ' + label + ' verdict' if base is None else src} is missing.")
    other = json.loads(src.read_text())
    # a width run again on seeds the saved verdict holds: its new rows replace the saved ones; on
    # other seeds (--first-seed) they join them
    again = {w for w in set(other["series"]["widths"]) & set(base["series"]["widths"])
             if dec.seeds_at(other, w) & dec.seeds_at(base, w)}
    if again:
        base = dec.at_widths(base, set(base["series"]["widths"]) - again)
        print(f"{label}: replacing the saved rows of width(s) {sorted(again)} with this run's")
    v = dec.join_verdicts(base, other)
    v["plots"] = base.get("plots", [])
    (OUT / f"{label}.json").write_text(json.dumps(v, indent=2, sort_keys=True) + "\n")
    if label == "default":  # the README's figure: the figure command's own plot function, on the joined verdict
        from interference.plots import plot_decomposition
        plot_decomposition(v, RESULTS.parents[1] / "figures")
    seeds = sorted(r["seed"] for r in other["per_seed"])
    print(f"{label}: joined widths {other['series']['widths']} (seeds {seeds[0]}-{seeds[-1]}) into {OUT / (label + '.json')}; "
          f"seeds per width now {v['seeds_by_width']}")


def base_confound(v: dict) -> list[str]:
    """How much each width's base knows (its pinned metrics) beside its Known-only drift, and
    whether each had memorised its statements when its memorisation phase ended: a width
    comparison is only as clean as its bases are alike."""
    from interference.bases import pinned_root
    qa, memorised = {}, {}
    for spec_hash in v.get("base_fingerprints", {}):
        m = pinned_root() / f"base-{spec_hash}" / "metrics.json"
        c = pinned_root() / f"base-{spec_hash}" / "config.json"
        if m.exists() and c.exists():
            w = json.loads(c.read_text())["model"]["d_model"]
            metrics = json.loads(m.read_text())
            qa[w] = metrics["known_qa_accuracy"]
            memorised[w] = bool(metrics.get("consolidation", {}).get("memorised"))
    if len(qa) < 2:
        return []
    st = v["statistics"]
    worst = min(qa, key=qa.get)
    drift = "; ".join(f"d{w} {format_estimate(st[f'F_drift_d{w}'])}" for w in sorted(qa) if f"F_drift_d{w}" in st)
    out = []
    if qa[worst] < 0.95:
        out += [f"**The bases are not alike across widths.** Known QA of the pinned bases: "
                + ", ".join(f"d{w} {qa[w]:.3f}" for w in sorted(qa))
                + f"; Known-only drift: {drift}. At the same pre-training steps the d{worst} base knows its facts less "
                "firmly, so its forgetting (and E) does not fall with width as room alone would make it; the width "
                "trend compares these bases, not width alone.", ""]
    elif len(set(memorised.values())) > 1:
        late = [w for w in sorted(memorised) if not memorised[w]]
        out += [f"**The bases are not alike across widths.** Every base ends knowing its facts (known QA "
                + ", ".join(f"d{w} {qa[w]:.3f}" for w in sorted(qa)) + "), but the "
                + ", ".join(f"d{w}" for w in late) + (" base had" if len(late) == 1 else " bases had")
                + " not memorised their statements when the fixed memorisation phase ended, so they learned them "
                "later and spent fewer steps consolidating them than the "
                + ", ".join(f"d{w}" for w in sorted(memorised) if memorised[w]) + " base did; the "
                "width trend compares these bases, not width alone.", ""]
    return out


def learned_shortfall(v: dict) -> list[str]:
    """Which arm missed the learning check at which width, and by how much (a failed check
    withholds every positive word at that width, by the registered rule)."""
    st, out = v["statistics"], []
    for w in v["series"]["widths"]:
        if v["checks"].get(f"d{w} learned", True):
            continue
        short = [(a, st[f"plasticity_{a}_d{w}"]["value"]) for a in dec.LEARNED_ARMS
                 if f"plasticity_{a}_d{w}" in st and number(st[f"plasticity_{a}_d{w}"].get("value")) < dec.LEARNED_AT]
        if short:
            out.append(f"At d{w} the learning check failed in " + ", ".join(f"the {a} arm ({p:.3f} against "
                                                                             f"{dec.LEARNED_AT})" for a, p in short)
                       + "; by the registered rule that withholds every positive word there, so a share whose "
                       "interval clears 0.5 reads `inconclusive`.")
    return out


def trend_reading(v: dict) -> str:
    """Which shares clearly rise or fall with width (interval of the per-doubling slope off 0)."""
    t = v["series"]["trend"]
    falls = [h for h, _, _ in SHARES if number(t[h].get("high")) < 0]
    rises = [h for h, _, _ in SHARES if number(t[h].get("low")) > 0]
    parts = ([f"{', '.join(falls)} clearly fall{'s' if len(falls) == 1 else ''} with width"] if falls else []) + \
        ([f"{', '.join(rises)} clearly rise{'s' if len(rises) == 1 else ''}"] if rises else [])
    return (" " + "; ".join(parts) + ", reported as found.") if parts else ""


def load(label: str) -> dict | None:
    p = OUT / f"{label}.json"
    return json.loads(p.read_text()) if p.exists() else None


def width_table(v: dict) -> list[str]:
    by, words = v["series"]["by_width"], v["verdicts"]
    rows = ["| width | E = F[sem] - F[drift] | hypothesis | share, equal steps (endpoint) | word | share, equal learning | word |",
            "|---|---|---|---|---|---|---|"]
    for w in v["series"]["widths"]:
        sh = by[str(w)]["shares"]
        for i, (h, s, _) in enumerate(SHARES):
            rows.append(f"| {'d' + str(w) if i == 0 else ''} | {format_estimate(sh['E']) if i == 0 else ''} | {h} ({s}) | "
                        f"{format_estimate(sh[s])} | `{words[str(w)]['step_matched'][h]}` | "
                        f"{format_estimate(sh[s + '_learned'])} | `{words[str(w)]['learning_matched'][h]}` |")
    return rows


def arm_table(v: dict) -> list[str]:
    st = v["statistics"]
    arms = [a for a in ("sem", "uuid", "replay", "drift", "sem_known", "idk_known", "sd_sem", "sd_uuid")
            if any(f"F_{a}_d{w}" in st for w in v["series"]["widths"])]
    rows = ["| width | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for w in v["series"]["widths"]:
        rows.append(f"| d{w} | " + " | ".join(format_estimate(st[f"F_{a}_d{w}"]) if f"F_{a}_d{w}" in st else "-"
                                             for a in arms) + " |")
    return rows


def checks_line(v: dict) -> str:
    failed = [k for k, ok in v["checks"].items() if not ok]
    return "every required check passed" if not failed else "required checks failed: " + ", ".join(f"`{k}`" for k in failed)


def trend_line(v: dict) -> str:
    return "; ".join(f"{h} {format_estimate(v['series']['trend'][h])}" for h, _, _ in SHARES)


def seeds_note(v: dict) -> str:
    n = v.get("seeds", 0)
    by = v.get("seeds_by_width")
    if by and len(set(by.values())) > 1:
        return (" (seeds of the registered " + str(REGISTERED_SEEDS) + ": "
                + ", ".join(f"d{w} {by[w]}" for w in sorted(by, key=int))
                + "; a width with fewer had its count fixed before any of its results, for CPU time; widths and "
                "seed ranges ran in separate runs, joined from their per-seed rows)")
    if by and v.get("joined_from") and n >= REGISTERED_SEEDS:
        return (f" ({n} seeds at every width, the registered count; widths and seed ranges ran in separate runs, "
                "joined from their per-seed rows)")
    return "" if n >= REGISTERED_SEEDS else (f" ({n} of the registered {REGISTERED_SEEDS} seeds: the CPU time this "
                                             "session had; the same command with `--seeds 8` extends it)")


def registered_words() -> list[str]:
    rows = []
    for name, h in (("capacity", "capacity"), ("behavior_cloning", "behavior_cloning"), ("localized", "localized")):
        p = RESULTS / "verdicts" / "default" / f"{name}.json"
        if p.exists():
            r = json.loads(p.read_text())
            e = r.get("endpoint", r["share"])
            fps = ", ".join(sorted(set((r.get("base_fingerprints") or {}).values())))
            rows.append(f"| {h} | `{r['verdict']}` | {r['share_definition'].split(';')[0][:110]}... | "
                        f"{format_estimate(e)} | `{fps}` |")
    return rows


def paper_sentence(v: dict) -> str:
    words = v["verdicts"]
    parts = []
    for w in v["series"]["widths"]:
        got = words[str(w)]["step_matched"]
        diff = [h for h, _, _ in SHARES if (got[h] == "main_driver") != (PAPER[h] == "main_driver")
                or (PAPER[h] == "not_supported" and got[h] in ("main_driver", "contributes"))]
        parts.append(f"d{w}: " + ("agrees with the paper's account (localized the main driver, the other two not)"
                                  if not diff else "differs from the paper's account in " + ", ".join(diff)
                                  + f" (paper: {', '.join(PAPER[h] for h in diff)}; ours: "
                                  + ", ".join(got[h] for h in diff) + ")"))
    st = v["statistics"]
    residue = "; ".join(f"d{w} {format_estimate(st[f'F_replay_d{w}'])} vs drift {format_estimate(st[f'F_drift_d{w}'])}"
                        for w in v["series"]["widths"] if f"F_replay_d{w}" in st)
    trend = v["series"]["trend"]["capacity"]
    res = [st[f"F_replay_d{w}"] for w in v["series"]["widths"] if f"F_replay_d{w}" in st]
    overlap = max(number(e["low"]) for e in res) <= min(number(e["high"]) for e in res) if res else False
    direction = ("grows" if number(trend["low"]) > 0 else "falls" if number(trend["high"]) < 0 else "does not clearly move")
    return ("; ".join(parts) + f". Where ours differs: after {v['series']['replay_steps']} steps of 1:1 replay some "
            f"forgetting persists ({residue}), " + ("about the same at every width" if overlap else "changing with width")
            + f"; with width the capacity share {direction} ({format_estimate(trend)} per doubling)"
            + (", where capacity predicts the residue to shrink as room grows" if overlap else "") + ". The replay corpus rehearses the watched facts' statements, not their QA read-out, so this "
            "residue may be format generalisation that rehearsal does not restore rather than a lack of room; the "
            "shares are reported as measured.")


BCC = RESULTS / "bc_contrast"


def consolidation_stem(width: int) -> str:
    """File stem of one width's consolidation axis: d64's (the first) kept its plain names."""
    return "consolidation" if width == 64 else f"consolidation_d{width}"


def collect_consolidation(runs: list[Path]) -> None:
    """Copy each consolidation level's verdict (``--consolidations X`` runs, one width each) into
    ``<consolidation_stem>_c<X>.json``."""
    for r in runs:
        src = r / "decomposition" / "verdict.json"
        if not src.exists():
            raise SystemExit(f"{src} is missing; run that level first (docs/decomposition_consolidation.md).")
        v = json.loads(src.read_text())
        level = v["config"].get("consolidation")
        if level is None:
            raise SystemExit(f"{src} was run on the default bases, not a consolidation level; pass --consolidations.")
        widths = v["series"]["widths"]
        if len(widths) != 1:
            raise SystemExit(f"{src} holds widths {widths}; run each consolidation level at one width (--widths 128).")
        v["plots"] = [Path(p).name for p in v.get("plots", [])]
        (OUT / f"{consolidation_stem(int(widths[0]))}_c{level:g}.json").write_text(
            json.dumps(v, indent=2, sort_keys=True) + "\n")


def consolidation_levels() -> dict[int, dict[float, dict]]:
    """width -> consolidation level -> the saved verdict at that level (the 1x one not included)."""
    out: dict[int, dict[float, dict]] = {}
    for f in sorted(OUT.glob("consolidation*_c*.json")):
        v = json.loads(f.read_text())
        out.setdefault(int(v["series"]["widths"][0]), {})[v["config"]["consolidation"]] = v
    return out


def consolidation_lines() -> list[str]:
    """The decomposition along the consolidation axis, per width that ran it, from the saved levels
    and the saved 1x rows (``decomposition.consolidation_trend``); writes each width's trend JSON
    and figure beside them."""
    by_width = consolidation_levels()
    base = load("default")
    if not by_width or base is None:
        return ["**Consolidation axis:** not run yet (`docs/decomposition_consolidation.md` has the commands).", ""]
    from interference.plots import plot_consolidation
    lines, slopes = [], {}
    for width in sorted(by_width):
        levels = dict(by_width[width])
        levels[1.0] = dec.at_widths(base, {width})
        t = dec.consolidation_trend(levels, width)
        stem = consolidation_stem(width)
        (OUT / f"{stem}.json").write_text(json.dumps(t, indent=2, sort_keys=True) + "\n")
        plot_consolidation(t, OUT, stem=stem)
        slopes[width] = t["slope_per_doubling"]
        lines += consolidation_width_lines(t, stem, slopes)
    return lines


def consolidation_width_lines(t: dict, stem: str, slopes: dict) -> list[str]:
    """One width's consolidation paragraph; after the first width, L's slope set against it."""
    width = t["width"]
    rows = ["| consolidation | E = F[sem] - F[drift] | " + " | ".join(f"{h} ({s}) | word" for h, s, _ in SHARES) + " |",
            "|---|---|" + "---|---|" * len(SHARES)]
    for c in t["levels"]:
        b = t["by_level"][str(c)]
        rows.append(f"| {c:g}x | {format_estimate(b['shares']['E'])} | " + " | ".join(
            f"{format_estimate(b['shares'][s])} | `{b['words']['step_matched'][h]}`" for h, s, _ in SHARES) + " |")
    failed = sorted({k for c in t["levels"] for k, ok in t["by_level"][str(c)]["checks"].items() if not ok})
    slope = "; ".join(f"{h} {format_estimate(t['slope_per_doubling'][h])}" for h, _, _ in SHARES)
    clear = [h for h, _, _ in SHARES if (e := t["slope_per_doubling"][h]).get("low") is not None
             and (e["low"] > 0 or e["high"] < 0)]
    first = min(slopes)
    against = ""
    if width != first:
        a, b = slopes[first]["localized"], slopes[width]["localized"]
        same = number(b.get("low")) > 0 if number(a.get("low")) > 0 else number(b.get("high")) < 0 if number(a.get("high")) < 0 else None
        against = (f" Against d{first}: localized's slope per doubling is {format_estimate(b)} here and "
                   f"{format_estimate(a)} at d{first}; " + (
                       "the same sign, clear at both widths: replicated." if same else
                       f"d{first}'s trend is not replicated at these seeds" + (
                           ", and the point estimate has the opposite sign"
                           if number(a.get("value")) * number(b.get("value")) < 0 else "")
                       + " (an interval that covers 0 is not evidence of no effect)." if same is False else f"d{first} showed no clear trend to replicate."))
    return [f"**Consolidation axis at d{width}** (`docs/decomposition_consolidation.md`, pre-registered as a trend that "
            f"decides nothing): the same design at d{width} on bases trained 0.5x and 2x as many steps past memorising "
            f"as the default 1x, seeds {', '.join(map(str, t['seeds']))} at every level (the 1x rows are the saved "
            "ones, from the pinned base, whose memorisation phase ran on another machine than the other two levels'); "
            + ("every required check passed" if not failed else "checks that failed at some level: "
               + ", ".join(f"`{k}`" for k in failed)) + ":", "", *rows, "",
            f"Share per doubling of consolidation (per seed over the three levels, equal steps): {slope}. "
            + (f"A clear trend: {', '.join(clear)}." if clear else
               "No share moves clearly with consolidation on these seeds (every interval covers 0; three seeds are "
               "few, so this is not evidence of no effect).") + " " + consolidation_against_expectation(t) + against,
            "", f"![consolidation d{width}](analyses/results/decomposition/{stem}.png)", ""]


def consolidation_against_expectation(t: dict) -> str:
    """The trend against what docs/decomposition_consolidation.md expected, from the slopes."""
    def way(h):
        e = t["slope_per_doubling"][h]
        if e.get("low") is None:
            return "unknown"
        return "rises" if e["low"] > 0 else "falls" if e["high"] < 0 else "does not move clearly"
    loc, cap = way("localized"), way("capacity")
    out = [f"Against the pre-registered expectations: capacity's share {cap} "
           + ("(expected: not to fall; as expected)." if cap != "falls" else "(expected: not to fall; it does, a finding).")]
    if loc == "rises":
        out.append("Localized's share rises with consolidation, which neither expectation said (fall, if consolidation "
                   "separates old facts from the new names; stay, if shared name pieces alone set the interference): "
                   "a finding, small and on three seeds.")
    else:
        out.append(f"Localized's share {loc} (expected: to fall if consolidation separates old facts from the new names, "
                   "to stay if shared name pieces alone set the interference).")
    return " ".join(out)


def sweep_label(v: dict) -> str:
    """``d64`` for the registered budget, ``d64_e40`` for a run at another number of epochs."""
    from interference.hypotheses.count_sweep import CountSweepConfig
    e = v["config"]["epochs"]
    return f"d{v['width']}" + ("" if e == CountSweepConfig().epochs else f"_e{e}")


def sweep_lines() -> list[str]:
    """capacity's own test, the uuid-key count sweep on one pinned width (``capacity_sweep``): the
    registered run and any follow-up at another budget, each from its saved verdict."""
    files = sorted(SWEEP.glob("d*.json"), key=lambda f: (len(f.stem), f.stem))
    if not files:
        return ["**Capacity's count sweep** (`python -m interference.run_hypothesis capacity_sweep`, pre-registered): "
                "not run yet.", ""]
    from interference.bases import BaseSpec
    from interference.world import World
    world = World(BaseSpec.default().world)
    known = (len(world.split("pretrain_qa")) + len(world.split("statement_only"))) * len(world.config.relations)
    followed = any("_e" in f.stem for f in files)  # a follow-up at another budget is saved beside the registered run
    out, saved = [], {f.stem: json.loads(f.read_text()) for f in files}
    for f in files:
        if "_c" in f.stem:  # an extension to larger counts, read beside the run it extends
            out += sweep_extension_lines(saved[f.stem], f.stem, saved.get(f.stem.split("_c")[0]), known)
            continue
        out += sweep_run_lines(saved[f.stem], f.stem, known, followed and "_e" not in f.stem)
    return out


def sweep_extension_lines(v: dict, label: str, extended: dict | None, known: int) -> list[str]:
    """``docs/count_sweep_extension.md``: the follow-up's budget at a larger count, reported beside
    the follow-up (whose verdict stands): the reading at the largest count, each count's persisting
    share, the slope against the follow-up's, and whether the shared count reproduced its cells."""
    sw = v["series"]["sweep"]
    top = max(sw, key=int)
    r = sw[top]
    share = lambda c: c["excess_joint"]["value"] / c["excess_sft"]["value"] if c["excess_sft"]["value"] else math.nan  # noqa: E731
    learned = all(sw[c][f"plasticity_{a}"]["value"] >= dec.LEARNED_AT for c in sw for a in ("sft", "joint"))
    out = (f"**The {v['config']['epochs']}-epoch sweep taken to {r['facts']:,} new facts** (`docs/count_sweep_extension.md`, "
           f"written before it ran; counts {', '.join(sorted(sw, key=int))} entities, {v['seeds']} seeds; "
           f"{r['facts'] / known:.1f}x the base's {known:,} entity facts). At {r['facts']:,} new facts plain SFT forgets "
           f"{format_estimate(r['forgetting_sft'])} of the known facts, 1:1 replay {format_estimate(r['forgetting_joint'])}, "
           f"Known-only SFT {format_estimate(r['forgetting_drift'])}; plasticity {r['plasticity_sft']['value']:.2f} / "
           f"{r['plasticity_joint']['value']:.2f} (sft / joint), so the learning check "
           f"{'passes' if learned else 'fails'}. The share of the excess that persists under replay at that count: "
           f"{share(r):.3f}.")
    if extended is not None:
        esw = extended["series"]["sweep"]
        out += " Per count, with the follow-up's: " + "; ".join(
            f"{esw[c]['facts']:,} facts {share(esw[c]):.3f}" for c in sorted(esw, key=int)) + f"; {r['facts']:,} facts {share(r):.3f}."
        same = [c for c in sw if c in esw]
        keys = ("forgetting_sft", "forgetting_joint", "forgetting_drift")
        ok = all(abs(sw[c][k]["value"] - esw[c][k]["value"]) < 1e-9 for c in same for k in keys)
        if same:
            out += (f" The shared count ({', '.join(format(esw[c]['facts'], ',') for c in same)} facts) "
                    + ("reproduced the follow-up's saved forgetting exactly." if ok else
                       "did NOT reproduce the follow-up's saved forgetting: the two runs are not of the same cells."))
        out += (f" Excess forgetting per doubling of the count: {format_estimate(v['statistics']['slope_count'])} "
                f"(the follow-up: {format_estimate(extended['statistics']['slope_count'])}).")
    out += (f" This run's own P, pooled over its two counts (nearly all the largest): {format_estimate(v['endpoint'])}, "
            f"which the rule words `{v['verdict']}`; it is reported, and does not replace the follow-up's verdict.")
    return [out, "", f"![count sweep](analyses/results/capacity_sweep/{label}/capacity.png)", ""]


def sweep_run_lines(v: dict, label: str, known: int, followed: bool) -> list[str]:
    """One count-sweep run's paragraph; ``known``: the base's entity facts; ``followed``: a run at
    another budget follows this one."""
    sw = v["series"]["sweep"]
    rows = ["| new entities | new facts | steps | F[sft] | F[joint] | F[drift] | excess F[sft] - F[drift] | "
            "plasticity sft / joint |", "|---|---|---|---|---|---|---|---|"]
    for c in sorted(sw, key=int):
        r = sw[c]
        rows.append(f"| {c} | {r['facts']} | {r['steps']} | {format_estimate(r['forgetting_sft'])} | "
                    f"{format_estimate(r['forgetting_joint'])} | {format_estimate(r['forgetting_drift'])} | "
                    f"{format_estimate(r['excess_sft'])} | {r['plasticity_sft']['value']:.2f} / "
                    f"{r['plasticity_joint']['value']:.2f} |")
    st = v["statistics"]
    top = max(sw, key=int)
    follow = "_e" in label
    head = (f"**Capacity's count sweep with {v['config']['epochs']} epochs per count** (the follow-up pre-registered in "
            "`docs/count_sweep_long.md` after the registered run's learning check failed; decided on its own"
            if follow else "**Capacity's own test: a uuid-key count sweep on one width** (`capacity_sweep`, pre-registered")
    return [f"{head}, hash `{v['preregistered']['hash']}`; the real-model sweep's grid and rule on the pinned "
            f"d{v['width']} base, {v['seeds']} seeds, {v['config']['epochs']} epochs per count; it goes up to "
            f"{sw[top]['facts']:,} new facts, {sw[top]['facts'] / known:.1f}x the {known:,} entity facts the base was "
            "pre-trained on; the paper goes to 1M). Endpoint P = the share of SFT's excess forgetting that 1:1 "
            f"replay of the pre-training corpus does not remove, pooled over counts: **`{v['verdict']}`**, P = "
            f"{format_estimate(v['endpoint'])} (equal learning: {format_estimate(st['P_learning_matched'])}); excess "
            f"forgetting per doubling of the count {format_estimate(st['slope_count'])}; "
            + checks_line(v) + ":", "", *rows, "", *sweep_reading(v, top, followed),
            f"![count sweep](analyses/results/capacity_sweep/{label}/capacity.png)", ""]


def budget_note(sw: dict) -> str:
    """The decomposition's uuid arm beside the sweep's count of the same size: same facts, other budget."""
    cfg = dec.DecompositionConfig()
    n = cfg.count * 4  # the world's four relations
    same = next((c for c in sw if sw[c]["facts"] == n), None)
    v = load("default")
    if same is None or v is None or not v["checks"].get("d64 learned"):
        return ""
    return (f"(The decomposition's uuid arm, whose {n} facts pass its learning check at d64, trains {cfg.sft.max_steps} steps; "
            f"this design gives {n} facts {sw[same]['steps']}.) ")


def sweep_reading(v: dict, top: str, followed: bool) -> list[str]:
    """What the sweep's numbers say, from them: whether the new facts were learned, and how much of
    SFT's excess forgetting rehearsal removes at the largest count."""
    sw = v["series"]["sweep"]
    low = [c for c in sorted(sw, key=int) if sw[c]["plasticity_sft"]["value"] < dec.LEARNED_AT]
    r = sw[top]
    kept = f"plain SFT forgets {format_estimate(r['forgetting_sft'])} of the known facts, 1:1 replay {format_estimate(r['forgetting_joint'])}"
    if not low:
        e = v["endpoint"]
        out = (f"At {r['facts']:,} new facts {kept}. Every count learned its new facts, so P reads as registered: 1:1 "
               f"replay removes {1 - e['value']:.0%} of SFT's excess forgetting and {e['value']:.0%} persists.")
        d = load("default")
        w = str(v["width"])
        if d is not None and w in d["shares"]:
            out += (f" The decomposition's capacity share at d{w}, the other design's measure of the same residue, is "
                    f"C = {format_estimate(d['shares'][w]['capacity'])}.")
        word = v["verdict"]
        if word in ("contributes", "main_driver"):
            out += (f" The paper finds capacity does not drive the forgetting; here it `{word}`"
                    + (", and is not the main driver." if word == "contributes" else "."))
        return [out, ""]
    first = low[0]
    return [f"**What that means.** In {v['config']['epochs']} epochs the d{v['width']} base learns "
            f"{sw[first]['plasticity_sft']['value']:.0%} of {sw[first]['facts']:,} new uuid facts and "
            f"{r['plasticity_sft']['value']:.0%} of {r['facts']:,}, so the learning check fails and the rule withholds "
            "any positive word: whether the base has room for facts it never learned is not tested. "
            + budget_note(sw) + "What the "
            f"sweep does show: at {r['facts']:,} new facts {kept}, so rehearsal removes nearly all of what SFT "
            f"destroys (P {format_estimate(v['endpoint'])}), the opposite of what \"no room\" predicts, on facts "
            "that were not learned to the criterion. "
            + ("The follow-up below trains each count longer." if followed
               else "A longer budget per count is the next run."), ""]


def collect_sweep(runs: list[Path]) -> None:
    from interference.plots import plot_capacity_sweep
    for r in runs:
        src = r / "capacity_sweep" / "verdict.json"
        if not src.exists():
            continue
        SWEEP.mkdir(parents=True, exist_ok=True)
        v = json.loads(src.read_text())
        v["plots"] = [Path(p).name for p in v.get("plots", [])]
        # the run directory names the run (capacity_sweep_d64_e40_c800 -> d64_e40_c800), so two runs
        # at one budget (a follow-up and its extension to larger counts) are saved apart
        label = r.name[len("capacity_sweep_"):] if r.name.startswith("capacity_sweep_d") else sweep_label(v)
        (SWEEP / f"{label}.json").write_text(json.dumps(v, indent=2, sort_keys=True) + "\n")
        plot_capacity_sweep(v, SWEEP / label)  # redrawn from the saved verdict, as the README shows it


def collect_bc(runs: Path | None) -> None:
    if runs is None:
        return
    src = runs / "bc_contrast" / "verdict.json"
    if src.exists():
        BCC.mkdir(parents=True, exist_ok=True)
        v = json.loads(src.read_text())
        v["plots"] = [Path(p).name for p in v.get("plots", [])]
        (BCC / "default.json").write_text(json.dumps(v, indent=2, sort_keys=True) + "\n")


BCS = RESULTS / "bc_self"


def collect_bc_self(runs: Path | None) -> None:
    """Copy the registered bc_self verdict into ``analyses/results/bc_self/default.json`` and draw
    its figure there with the saved decomposition's L and C beside G (the same excess, one axis)."""
    src = None if runs is None else runs / "bc_self" / "verdict.json"
    if src is None or not src.exists():
        return
    from interference.plots import plot_bc_self
    BCS.mkdir(parents=True, exist_ok=True)
    v = json.loads(src.read_text())
    v["plots"] = [Path(p).name for p in plot_bc_self(v, BCS, beside=load("default"))]
    (BCS / "default.json").write_text(json.dumps(v, indent=2, sort_keys=True) + "\n")


def bc_self_registered_lines() -> list[str]:
    """The registered self-answer design (``hypotheses/bc_self.py``), if it has run: G per width
    with its word by the common rule, beside the decomposition's L and C at the same widths."""
    f = BCS / "default.json"
    if not f.exists():
        return ["**Behavior cloning's share from the self-answer arm** (`python -m interference.run_hypothesis "
                "bc_self`, pre-registered): not run yet.", ""]
    v = json.loads(f.read_text())
    dec_v = load("default")
    dec_by = dec_v["series"]["by_width"] if dec_v else {}
    rows = ["| width | E = F[sem] - F[drift] | G, equal steps (endpoint) | word | G, equal learning | word | "
            "M = D[self] / D[sem] | R, damage per unit of movement | decomposition's L / C at this width |",
            "|---|---|---|---|---|---|---|---|---|"]
    for w in v["series"]["widths"]:
        b, wd = v["series"]["by_width"][str(w)], v["words"][str(w)]
        sh = dec_by.get(str(w), {}).get("shares")
        lc = f"{format_estimate(sh['L'])} / {format_estimate(sh['C'])}" if sh else "-"
        rows.append(f"| d{w} | {format_estimate(b['E'])} | {format_estimate(b['G'])} | `{wd['step_matched']}` | "
                    f"{format_estimate(b['G_learned'])} | `{wd['learning_matched']}` | {format_estimate(b['M'])} | "
                    f"{format_estimate(b['R'])} | {lc} |")
    seeds = v.get("seed_numbers") or []
    by = v["series"]["by_width"]
    ws = v["series"]["widths"]
    words = {w: v["words"][str(w)]["step_matched"] for w in ws}
    found = "; ".join(f"d{w} `{words[w]}`" for w in ws)
    hallu = "; ".join(f"d{w} {format_estimate(by[str(w)]['G_hallucination'])}" for w in ws)
    below_half = [w for w in ws if number(by[str(w)]["G"].get("high")) < 0.5]
    larger = [w for w in ws if str(w) in dec_by and number(dec_by[str(w)]["shares"]["L"].get("low"))
              > number(by[str(w)]["G"].get("high"))]
    reading = [f"By the common rule: {found}. In confident-wrong-answer units (secondary): {hallu}."]
    if below_half:
        reading.append(f"G's upper bound is below 0.5 at {', '.join(f'd{w}' for w in below_half)}: teaching the "
                       "behaviour of answering Unknown questions, without new content, reproduces a minority of "
                       "SFT's excess forgetting there, as localized and capacity predicted and behavior cloning did not.")
    if larger:
        reading.append(f"At {', '.join(f'd{w}' for w in larger)} the decomposition's localized share L lies wholly "
                       "above G (its lower bound over G's upper bound), in the same unit of the same excess.")
    pilot = RESULTS / "bc_self_pilot.json"
    if pilot.exists():
        pb = json.loads(pilot.read_text())["by_width"]
        shared = [w for w in ws if str(w) in pb]
        reading.append("On the pilot's seeds 0-3 (seen before registering, not counted) G was "
                       + "; ".join(f"d{w} {format_estimate(pb[str(w)]['G'])}" for w in shared) + ".")
    dec_words = dec_v["verdicts"] if dec_v else {}
    changed = [w for w in ws if str(w) in dec_words
               and dec_words[str(w)]["step_matched"]["behavior_cloning"] != words[w]]
    if changed:
        reading.append("Behavior cloning's word by the common rule changes at " + ", ".join(f"d{w}" for w in changed)
                       + ": the decomposition's idk-arm B reads " + ", ".join(
                           f"`{dec_words[str(w)]['step_matched']['behavior_cloning']}`" for w in changed)
                       + " there because its arm counts abstentions as damage; the self arm, which abstains on "
                       "nothing, gives " + ", ".join(f"`{words[w]}`" for w in changed) + ". A finding, stated as such" + (
                           ": the behaviour is a small part of the excess, not none of it, and not the main driver."
                           if all(words[w] == "contributes" for w in changed) else "."))
    reading.append("The self arm moves less far than sem (M), which the registration named before the run: G is the "
                   "share it reproduces, R what it would be per unit of movement (assuming damage grows with "
                   "movement). This world's base already answers every Unknown question confidently, so the arm "
                   "raises a confidence rather than creating it; on a base that abstains the same design is the "
                   "stronger test.")
    return [f"**Behavior cloning's share from the self-answer arm** (`hypotheses/bc_self.py`, pre-registered after "
            f"the pilot above, hash `{v['preregistered']['hash']}`; seeds {seeds[0]}-{seeds[-1]}, fresh of the pilot's; "
            f"{v['series']['steps']} steps on the pinned default bases): G = (F[self] - F[drift]) / E, the share of "
            "the decomposition's excess that training sem's Unknown questions on the base's own answers reproduces, "
            f"decided by the common rule; {checks_line(v)}:", ""] + rows + ["", " ".join(reading), "",
            f"![bc_self](analyses/results/bc_self/bc_self.png)", ""]


def bc_contrast_lines() -> list[str]:
    """The mended behavior-cloning arm (``hypotheses/bc_contrast.py``), if it has run."""
    f = BCC / "default.json"
    if not f.exists():
        return ["**Behavior cloning with a mended idk arm** (`python -m interference.run_hypothesis bc_contrast`, "
                "pre-registered): not run yet.", ""]
    v = json.loads(f.read_text())
    rows = ["| width | E = F[sem] - F[drift] | B, equal steps (endpoint) | word | B, equal learning | word | "
            "idk arm's abstention on known watched facts |", "|---|---|---|---|---|---|---|"]
    for w in v["series"]["widths"]:
        sh, wd = v["series"]["by_width"][str(w)], v["words"][str(w)]
        rows.append(f"| d{w} | {format_estimate(sh['E'])} | {format_estimate(sh['B'])} | `{wd['step_matched']}` | "
                    f"{format_estimate(sh['B_learned'])} | `{wd['learning_matched']}` | "
                    f"{format_estimate(sh['abstain_idk_known'])} |")
    return [f"**Behavior cloning with a mended idk arm** (`hypotheses/bc_contrast.py`, pre-registered, hash "
            f"`{v['preregistered']['hash']}`, {v['seeds']} seeds): the Known half of both mixed arms, and the drift "
            "set, is QA of held-back statement-only entities, the same kind as the watched half, so that the idk arm "
            "cannot get away with \"abstain unless this entity's QA was trained\"; a required check says whether it "
            f"abstained anyway; {checks_line(v)}:", ""] + rows + [""] + bc_reading(v)


def bc_reading(v: dict) -> list[str]:
    """What the mended arm's numbers say, from them: whether the abstention check held, and B in
    confident-wrong-answer units (a registered secondary read of this design)."""
    by = v["series"]["by_width"]
    ws = v["series"]["widths"]
    ab = "; ".join(f"d{w} {format_estimate(by[str(w)]['abstain_idk_known'])}" for w in ws)
    bh = "; ".join(f"d{w} {format_estimate(by[str(w)]['B_hallucination'])}" for w in ws)
    failed = [k for k, ok in v["checks"].items() if not ok and "abstains" in k]
    if not failed:
        return [f"The idk arm kept answering the known watched facts (abstention {ab}), so B is read as registered. "
                f"In confident-wrong-answer units (secondary): {bh}.", ""]
    return [f"**The mend did not work, and that is the finding.** With a Known half of the watched facts' own kind the "
            f"idk arm still abstains on the known watched facts ({ab}). So the earlier arm's abstention did not come from "
            "telling pre-trained-QA entities apart from statement-only ones: this arm abstains on known entities it "
            "was not fine-tuned on, whatever the base knows about them, a behaviour the SFT set teaches that reaches "
            "facts it never touched. B in forgetting units counts those abstentions as forgetting and is far below zero; by the "
            "registered rule a negative share is `not_supported` (the failed check only withholds positive words), "
            "but the check says the arm cannot isolate what answering Unknown questions costs. In "
            f"confident-wrong-answer units (a registered secondary read, deciding nothing) B = {bh}: abstaining on the "
            "Unknown questions instead of answering them removes about that share of SFT's excess confident wrong "
            "answers on known facts, at the price of the abstentions.", ""]


def bc_pilot_lines() -> list[str]:
    """The pilot of docs/bc_mix_pilot.md (a larger Known share in the idk arm), per width it ran
    at, from ``analyses/results/bc_mix_pilot*.json``; deciding nothing."""
    runs = [json.loads(f.read_text()) for f in sorted(RESULTS.glob("bc_mix_pilot*.json"))]
    if not runs:
        return []
    runs.sort(key=lambda r: r["width"])
    rows = ["| width | Known facts per new fact | idk arm abstains, known watched | idk arm abstains, never-seen | "
            "F[idk] | F[sem] at the same share |", "|---|---|---|---|---|---|"]
    val = lambda e: "n/a" if e["value"] is None else f"{e['value']:.3f}"  # noqa: E731
    for r in runs:
        for k in r["shares"]:
            i, m = r["by_arm"][f"idk_{k}"], r["by_arm"][f"sem_{k}"]
            rows.append(f"| d{r['width']} | {k} | {val(i['abstain_known'])} | {val(i['abstain_never_seen'])} | "
                        f"{val(i['F'])} | {val(m['F'])} |")
    chosen = {r["width"]: r["chosen_share"] for r in runs}
    found = "; ".join(f"d{w}: {'share ' + str(c) if c is not None else 'none'}" for w, c in chosen.items())
    head = [f"**Can a larger Known share make the idk arm selective?** A pilot (`docs/bc_mix_pilot.md`, written "
            f"before it ran, deciding no hypothesis; {runs[0]['seeds']} seeds, {runs[0]['steps']} steps) puts r Known "
            "QA facts after each \"I don't know\" fact. A share qualifies when the "
            f"{runs[0]['rule']}. Qualifying shares: {found}. Means over seeds:", ""]
    def ratio(r, k):
        i = r["by_arm"][f"idk_{k}"]
        return i["abstain_never_seen"]["value"] / i["abstain_known"]["value"] if i["abstain_known"]["value"] else math.inf
    sel = "; ".join(f"d{r['width']} " + ", ".join(f"{ratio(r, k):.1f}" for k in r["shares"]) for r in runs)
    def rising(r, f):
        xs = [f(r, k) for k in r["shares"]]
        return all(b > a for a, b in zip(xs, xs[1:]))
    known = lambda r, k: -r["by_arm"][f"idk_{k}"]["abstain_known"]["value"]  # noqa: E731
    trend = ("A larger Known share lowers abstention on the known facts and raises selectivity"
             if all(rising(r, known) and rising(r, ratio) for r in runs) else
             "Abstention on the known facts and selectivity do not move the same way at every width")
    reading = [f"Selectivity, never-seen over known abstention, at r = {', '.join(map(str, runs[0]['shares']))}: {sel}. "
               f"{trend}, but at no tested share and width does the arm abstain on at most 10% of what it knows and on "
               "half of what it never saw. "
               "The Known share is also rehearsal, since plain SFT forgets less beside it, so a B built on a larger "
               "share must hold the share equal between its two arms." if all(c is None for c in chosen.values()) else
               "A qualifying share is what a registered B design would use, with the share held equal between its "
               "two arms (plain SFT forgets less beside a larger Known share).", ""]
    return head + rows + [""] + reading


def bc_self_lines() -> list[str]:
    """The pilot of docs/bc_self_pilot.md (Unknown questions trained on the base's own greedy
    answers), from ``analyses/results/bc_self_pilot.json``; deciding nothing."""
    f = RESULTS / "bc_self_pilot.json"
    if not f.exists():
        return []
    r = json.loads(f.read_text())
    rows = ["| width | G = (F[self] - F[drift]) / E | M = D[self] / D[sem] | R, damage per unit of movement | "
            "E = F[sem] - F[drift] | self targets' p, start -> end | pilot's reading |", "|---|---|---|---|---|---|---|"]
    for w in r["widths"]:
        b = r["by_width"][str(w)]
        rows.append(f"| d{w} | {format_estimate(b['G'])} | {format_estimate(b['M'])} | {format_estimate(b['R'])} | "
                    f"{format_estimate(b['E'])} | {b['p0_self']['value']:.2f} -> {b['pend_self']['value']:.2f} | "
                    f"{b['outcome']} |")
    agree = r["saved_decomposition_agreement"]
    same = ("the sem and drift arms reproduce the saved decomposition's rows for the same seeds (largest difference "
            + ", ".join(f"{k} {a['max_abs_diff']:.4f} over {a['n']} seed-width rows" for k, a in agree.items()) + ")") if agree else \
        "no saved decomposition rows to compare the sem and drift arms with"
    missing = [w for w in (64, 128, 256) if w not in r["widths"]]
    head = [f"**Does the behaviour alone, without new content, reproduce the forgetting?** A pilot "
            f"(`docs/bc_self_pilot.md`, committed before it ran, deciding no hypothesis; {r['seeds']} seeds, "
            f"{r['steps']} steps) trains sem's Unknown questions on the answers the base already gives. Ratios of "
            f"seed means with 95% intervals; {same}:", ""]
    moved_less = [w for w in r["widths"] if number(r["by_width"][str(w)]["M"].get("value")) < 0.5]  # null: not shown
    no_for = [w for w in r["widths"] if number(r["by_width"][str(w)]["G"].get("high")) < 0.5]
    tail = [""]
    if moved_less:
        tail.append(f"The self arm moved less than half as far as sem at {', '.join(f'd{w}' for w in moved_less)} "
                    "(M below 0.5), the confound the pre-registration named, so there R, the damage per "
                    "unit of movement, is the read, on the assumption that damage grows about in proportion to "
                    "movement.")
    if no_for:
        tail.append(f"G's upper bound is below 0.5 at {', '.join(f'd{w}' for w in no_for)}: the behaviour without "
                    "the content reproduces a minority of SFT's excess forgetting there.")
    tail.append("This world's base already answers every Unknown question confidently (the pre-registration's peek), "
                "so the self arm trains no new behaviour either; a real model that abstains is the stronger test.")
    if missing:
        tail.append(f"Not run this session: {', '.join(f'd{w}' for w in missing)} (CPU time); "
                    "`python analyses/bc_self_pilot.py` adds its cells beside the others.")
    return head + rows + tail + [""]


def section() -> str:
    v, held, demo = load("default"), load("heldout"), load("demo")
    lines = ["## Which hypothesis drives the forgetting? One decomposition in common units", ""]
    if v is None:
        return "\n".join(lines + ["*Not run yet:* `python -m interference.run_hypothesis decomposition`.", ""])
    pre = v["preregistered"]
    lines += [f"The three registered designs below decide on three different quantities, so their words cannot say "
              f"which hypothesis is the *main* driver. `python -m interference.run_hypothesis decomposition` "
              f"(pre-registered, hash `{pre['hash']}`, `interference/hypotheses/decomposition.py`) gives every "
              "hypothesis a share of one quantity: the excess forgetting E = F[sem] - F[drift] of natural "
              "semantic-name SFT over Known-only SFT, on the same base, set, steps and learning rate. "
              + "; ".join(f"{h}: {s} = {d}" for h, s, d in SHARES) + ". Rule, the same for all three: "
              f"{pre['rule']}", "",
              f"**Default world**{seeds_note(v)}, bases pinned in the repository "
              f"(`{', '.join(sorted(set(v['base_fingerprints'].values())))}`); {checks_line(v)}:", ""]
    lines += width_table(v)
    lines += ["", f"Forgetting of the base-known watched facts per arm (mean [95% CI]; replay after its "
                  f"{v['series']['replay_steps']}-step run, the others after {v['series']['steps']} steps):", ""]
    lines += arm_table(v)
    lines += ["", "**The behavior-cloning arm did not do what it was built to do.** Mixing Known QA into the "
              "\"I don't know\" arm was meant to stop it learning \"always abstain\"; it abstains instead on the "
              "known watched facts: " + "; ".join(
                  f"d{w} {format_estimate(v['series']['by_width'][str(w)]['shares']['abstain_idk_known'])}"
                  for w in v["series"]["widths"] if "abstain_idk_known" in v["series"]["by_width"][str(w)]["shares"])
              + ". Its Known half is QA of entities whose QA pre-training showed, and the watched facts' is not, so "
              "it can learn \"abstain unless this entity's QA was trained\"; B in forgetting units then counts those "
              "abstentions as damage, and comes out far below zero. In confident-wrong-answer units (added after "
              "the first results, deciding nothing): " + "; ".join(
                  f"d{w} {format_estimate(v['series']['by_width'][str(w)]['shares']['B_hallucination_posthoc'])}"
                  for w in v["series"]["widths"] if "B_hallucination_posthoc" in v["series"]["by_width"][str(w)]["shares"])
              + ". The word stays the registered one; the arm needs a Known half the model cannot tell apart from "
              "the watched facts (e.g. QA of held-back statement-only entities) before B can decide anything.", "",
              f"Share per doubling of width (slope over seeds that ran every width): {trend_line(v)}.", "",
              *base_confound(v),
              f"**Against the paper.** {paper_sentence(v)}", ""]
    sd = v["series"]["by_width"].get("128", {}).get("shares", {})
    if "sd_shrinks_overlap_part" in sd:
        lines += [f"**Self-distillation on the key-swap contrast** (d128): it shrinks the overlap part "
                  f"F[sem] - F[uuid] by {format_estimate(sd['sd_shrinks_overlap_part'])} and the uuid-key rest by "
                  f"{format_estimate(sd['sd_shrinks_rest'])} (difference {format_estimate(sd['sd_overlap_minus_rest'])}).",
                  ""]
    missing = [w for w in (64, 128, 256) if w not in v["series"]["widths"]]
    if missing:
        lines += [f"**Not run this session:** width{'s' if len(missing) > 1 else ''} "
                  f"{', '.join(f'd{w}' for w in missing)} (the registered design has three widths; its base was still "
                  "pre-training when the CPU time ran out). `--widths 64,128,256` in the same `--out` adds its cells.", ""]
    if held is not None:
        lines += [f"**Held-out world**{seeds_note(held)}; {checks_line(held)}:", ""] + width_table(held) + [""]
        if len(held["series"]["widths"]) > 1:
            lines += ["Forgetting per arm on the held-out world:", ""] + arm_table(held) + [
                "", f"Share per doubling of width on the held-out world: {trend_line(held)}.{trend_reading(held)}", ""]
            short = learned_shortfall(held)
            lines += ([" ".join(short), ""] if short else []) + base_confound(held)
    else:
        lines += ["**Held-out world:** not run this session (CPU time): "
                  "`--world analyses/worlds/heldout.json` runs it.", ""]
    if demo is not None:
        sh = demo["series"]["by_width"][str(demo["series"]["widths"][0])]["shares"]
        lines += [f"**The demo** (`bash scripts/demo.sh`: d{demo['series']['widths'][0]}, {demo['seeds']} seeds) "
                  f"prints `{demo['verdict']}`: " + "; ".join(
                      f"{h} {format_estimate(sh[s])} `{demo['verdicts'][str(demo['series']['widths'][0])]['step_matched'][h]}`"
                      for h, s, _ in SHARES) + ".", ""]
    lines += bc_contrast_lines()
    lines += bc_pilot_lines()
    lines += bc_self_lines()
    lines += bc_self_registered_lines()
    lines += sweep_lines()
    lines += consolidation_lines()
    reg = registered_words()
    if reg:
        lines += ["**The registered designs' words, kept as results** (computed on the earlier, unpinned base, whose "
                  "weights are named in the last column; each answers its own question, not \"which is the main "
                  "driver\"):", "", "| hypothesis | word | endpoint | value | base weights |", "|---|---|---|---|---|"]
        lines += reg + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/decomposition"))
    ap.add_argument("--heldout-runs", type=Path, default=Path("runs/decomposition_heldout"))
    ap.add_argument("--demo-runs", type=Path, default=Path("runs/demo"))
    ap.add_argument("--bc-runs", type=Path, default=Path("runs/bc_contrast"))
    ap.add_argument("--bc-self-runs", type=Path, default=Path("runs/bc_self"))
    ap.add_argument("--join-default", type=Path, help="a run of other widths to join into the saved default verdict")
    ap.add_argument("--join-heldout", type=Path, help="the same for the held-out world's verdict")
    ap.add_argument("--sweep-runs", type=Path, nargs="*",
                    default=[Path("runs/capacity_sweep_d64"), Path("runs/capacity_sweep_d64_e40"),
                             Path("runs/capacity_sweep_d64_e40_c800")])
    ap.add_argument("--consolidation-runs", type=Path, nargs="*", default=[],
                    help="runs of --consolidations X (each level its own --out), copied into the saved results")
    ap.add_argument("--out", type=Path, default=RESULTS / "decomposition.md")
    args = ap.parse_args(argv)
    for runs, label in ((args.runs, "default"), (args.heldout_runs, "heldout"), (args.demo_runs, "demo")):
        collect(runs, label)
    collect_bc(args.bc_runs)
    collect_bc_self(args.bc_self_runs)
    collect_sweep(args.sweep_runs)
    collect_consolidation(args.consolidation_runs)
    join(args.join_default, "default")
    join(args.join_heldout, "heldout")
    args.out.write_text(section() + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
