"""Write the localized experiment's results as markdown from a saved verdict, never by hand.

    python analyses/localized_report.py runs/hypotheses/localized/verdict.json analyses/results/localized/default.md

Sections: the pre-registration (text and hash), the verdict with the rule's inputs, per-arm
forgetting at equal learning and at equal steps, the signature against its null arm, patching
per layer, and the per-fact predictor AUROCs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interference.metrics.stats import format_estimate as fe  # noqa: E402
from interference.io import atomic_write_text  # noqa: E402


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
    layers = sorted({k.rsplit("/L", 1)[1] for k in st if k.startswith("patch/")}, key=int)
    lines += ["", "## Activation patching (fine-tuned model, last step; share of forgotten facts restored)", "",
              "| layer | share2 targets: own | control | share2 rest: own | control | uuid: own | control |",
              "|---|---|---|---|---|---|---|"]
    for L in layers:
        lines.append(f"| {L} | {g(f'patch/share2/targets/own/L{L}')} | {g(f'patch/share2/targets/control/L{L}')} "
                     f"| {g(f'patch/share2/rest/own/L{L}')} | {g(f'patch/share2/rest/control/L{L}')} "
                     f"| {g(f'patch/uuid/all/own/L{L}')} | {g(f'patch/uuid/all/control/L{L}')} |")
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
