"""Write the localized experiment's results as markdown from a saved verdict, never by hand.

    python analyses/localized_report.py runs/hypotheses/localized/verdict.json analyses/results/localized/default.md

Sections: the pre-registration (text and hash), the verdict with the rule's inputs, per-arm
forgetting at equal learning and at equal steps, the signature against its null arm, patching
per layer (the original subject-last reading, then every layer and position set with both
controls), and the per-fact predictor AUROCs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interference.metrics.stats import format_estimate as fe  # noqa: E402
from interference.io import atomic_write_text  # noqa: E402


def _mended_patching(v: dict, fe) -> list[str]:
    """The mended patching instrument (reported, decides nothing): per patched group and position
    set, own base state vs the two controls at every layer from the embedding output on."""
    info, st = v.get("patching") or {}, v["statistics"]
    layers = info.get("layers") or []
    rows = []
    for arm, a in (info.get("arms") or {}).items():
        for grp in a["groups"]:
            for pos in a["position_sets"]:
                k = f"patch/{arm}/{grp}/{pos}"
                rows += [f"| {arm} {grp} | {pos} | {x} | " + " | ".join(fe(st.get(f"{k}/{d}/{x}")) for d in (
                    "own", "control", "mean", "own_minus_control", "own_minus_mean")) + " |" for x in layers]
            rows += [f"| {arm} {grp} | {pos} | not applicable: {why} | | | | | |" for pos, why in a["not_applicable"].items()]
    if not rows:
        return []
    return ["", "## Activation patching at every layer and position set (reported, decides nothing)", "",
            "Sets: " + "; ".join(f"**{n}** {d}" for n, d in info["position_sets"].items()) + ". Controls: "
            + "; ".join(f"**{n}** {d}" for n, d in info["donors"].items() if n != "own") + ".", "",
            "| group | positions | layer | own | control | mean | own - control | own - mean |",
            "|---|---|---|---|---|---|---|---|", *rows]


def render(v: dict) -> str:
    st, pre, cfg = v["statistics"], v["preregistered"], v["config"]
    g = lambda k: fe(st.get(k))  # noqa: E731
    lines = [f"# localized: {v['verdict']} ({v['seeds']} seeds, base {v['base_hash']})", "",
             f"Pre-registered (hash {pre['hash']}): **endpoint** {pre['endpoint']}", ""]
    lines += [f"- {h}: {p}" for h, p in pre["predictions"].items()]
    lines += ["", f"**Rule**: {pre['rule']}", "",
              f"dose slope (equal learning) {fe(v['endpoint'])}; mean contrasts over 0/1/2 pieces "
              f"{[round(x, 4) if x is not None else None for x in v['dose_means']]} (monotone: "
              f"{v['monotone_mean_contrast']}); checks {v['checks']}", "",
              "## Forgetting per arm (mean [95% CI] over seeds)", "",
              "| arm | read | step | new facts learned | targets | rest | targets - rest | all |",
              "|---|---|---|---|---|---|---|---|"]
    for a in cfg["arms"]:
        for r in ("learned", "final"):
            p = f"{r}/{a}"
            lines.append(f"| {a} | {r} | {g(p + '/steps')} | {g(p + '/plasticity')} | {g(p + '/forget_targets')} "
                         f"| {g(p + '/forget_rest')} | {g(p + '/contrast')} | {g(p + '/forget_all')} |")
    lines += ["", "## Other statistics (equal learning unless noted)", "", "| statistic | value |", "|---|---|"]
    for k in ("learned/dose_slope", "final/dose_slope", "learned/first_minus_second", "learned/last_minus_first",
              "learned/share2_excess_share", "learned/signature/rate_arm", "learned/signature/rate_null",
              "learned/signature/excess", "learned/signature/capture_arm", "learned/signature/capture_null",
              "final/signature/rate_arm", "final/signature/rate_null"):
        lines.append(f"| {k} | {g(k)} |")
    # the original reading's keys (patch/{arm}/{group}/{donor}/L{i}); the mended ones have a position set too
    layers = sorted({k.rsplit("/L", 1)[1] for k in st if k.startswith("patch/") and k.count("/") == 4}, key=int)
    lines += ["", "## Activation patching (fine-tuned model, last step; share of forgotten facts restored)", "",
              "| layer | share2 targets: own | control | share2 rest: own | control | uuid: own | control |",
              "|---|---|---|---|---|---|---|"]
    for L in layers:
        lines.append(f"| {L} | {g(f'patch/share2/targets/own/L{L}')} | {g(f'patch/share2/targets/control/L{L}')} "
                     f"| {g(f'patch/share2/rest/own/L{L}')} | {g(f'patch/share2/rest/control/L{L}')} "
                     f"| {g(f'patch/uuid/all/own/L{L}')} | {g(f'patch/uuid/all/control/L{L}')} |")
    lines += _mended_patching(v, fe)
    lines += ["", "## Per-fact predictors of forgetting (leave-one-seed-out AUROC)", "",
              "| arm | model | AUROC baseline (fragility) | AUROC with predictor | increment |", "|---|---|---|---|---|"]
    for a, t in v.get("predictors", {}).items():
        for k, row in t.items():
            if k.startswith("baseline_plus_"):
                lines.append(f"| {a} | {k} | {fe(row['auroc_baseline'])} | {fe(row['auroc_full'])} | {fe(row['increment'])} |")
        for f, e in t.get("auroc_single", {}).items():
            lines.append(f"| {a} | {f} alone (in-sample) | | {fe(e)} | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or not Path(argv[0]).exists():
        print("error: pass an existing localized verdict.json and the markdown file to write.", file=sys.stderr)
        return 2
    atomic_write_text(argv[1], render(json.loads(Path(argv[0]).read_text())))
    print(f"wrote {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
