"""Figures of other commands' saved results: the hypotheses' verdicts and the per-fact forecast."""
from __future__ import annotations

import textwrap
from pathlib import Path

import interference.figures.style as style
from interference.figures.style import CYCLE, VERDICT_COLORS, finite, note, yerr


def plot_hypotheses(d: dict, out: Path, stem: str = "hypotheses") -> list[Path]:
    """One row per hypothesis: its pre-registered endpoint with the 95% CI, coloured by verdict,
    on the endpoint's own scale (endpoints differ in kind: a share, a slope), with the decision
    thresholds it was registered with (shaded: main driver; dotted: negligible)."""
    hyps = d["hypotheses"]
    names = list(hyps)
    fig, ax = style.figure(1, len(names), width=7.8, height=1.7)
    for i, n in enumerate(names):
        a, h = ax[i, 0], hyps[n]
        e, c = h["estimate"], VERDICT_COLORS.get(h["verdict"], "k")
        v = finite(e.get("value"))
        a.errorbar([v], [0], xerr=yerr([e]), fmt="o", color=c, capsize=5, ms=8, lw=2)
        a.axvline(0, color="k", lw=0.8)
        lo, hi = finite(e.get("low")), finite(e.get("high"))
        span = [x for x in (lo, hi, v, 0.0, h.get("negligible_below")) if x is not None and x == x]
        pad = 0.15 * (max(span) - min(span) or 1)
        x0, x1 = min(span) - pad, max(span) + pad
        a.set_xlim(x0, x1)
        if h.get("main_at") is not None:
            m = h["main_at"]
            if m <= x1:  # the main-driver region is on this row's scale: shade it
                a.axvspan(m, x1, color=VERDICT_COLORS["main_driver"], alpha=0.08)
                a.text(m, -0.85, f" main driver if the CI is above {m:g}", fontsize=6,
                       color=VERDICT_COLORS["main_driver"], va="bottom", ha="left")
            else:  # far off this row's scale (a slope of 0.02 against a bar of 0.5): say so inside the axes
                a.text(0.995, 0.05, f"main driver if the CI is above {m:g} (off this scale) \u2192", fontsize=6,
                       color=VERDICT_COLORS["main_driver"], va="bottom", ha="right", transform=a.transAxes)
        if h.get("negligible_below") is not None:
            a.axvline(h["negligible_below"], color=VERDICT_COLORS["not_supported"], lw=0.8, ls=":")
            a.text(h["negligible_below"], 0.45, f"negligible below {h['negligible_below']:g} ", fontsize=6,
                   color=VERDICT_COLORS["not_supported"], va="bottom", ha="right")
        a.set_yticks([])
        a.set_ylim(-1, 1.6)
        a.set_title(f"{n}: {h['verdict']}  ({h.get('seeds')} seeds)", loc="left", color=c, fontsize=9)
        a.text(0.01, 0.97, textwrap.fill("endpoint: " + h["endpoint"], 140), transform=a.transAxes, fontsize=6,
               color="#555555", va="top")
    ax[-1, 0].set_xlabel("pre-registered endpoint (mean, 95% CI over seeds; each on its own scale)")
    fig.suptitle("Why does SFT make the model forget? One pre-registered experiment per hypothesis")
    if d.get("missing"):
        style.caption(fig, "missing: " + " ".join(d["missing"]))
    return style.save(fig, out, stem)


def plot_forecast(d: dict, out: Path, stem: str = "forecast") -> list[Path]:
    """(a) ROC per predictor, (b) AUROC with CI per predictor, (c) share forgotten per risk decile."""
    fig, ax = style.figure(3, width=3.8, height=3.4)
    preds = list(d["auroc"])
    colors = {p: CYCLE[i % len(CYCLE)] for i, p in enumerate(preds)}
    if d["roc"]:
        for p, r in d["roc"].items():
            au = finite(d["auroc"].get(p, {}).get("value"))
            ax[0, 0].plot(r["fpr"], r["tpr"], color=colors.get(p, "k"), lw=2.0 if p == "forecast" else 1.1,
                          label=f"{p} (AUROC {au:.2f})")
        ax[0, 0].plot([0, 1], [0, 1], "k:", lw=0.8)
        ax[0, 0].set(xlabel="false-positive rate (kept facts flagged)", ylabel="true-positive rate (forgotten facts flagged)",
                     title="(a) ROC per predictor", xlim=(0, 1), ylim=(0, 1.01))
        ax[0, 0].legend(fontsize=6.5)
    elif d.get("per_seed_auroc"):  # no per-fact scores saved: how each predictor ranks on every held-out seed
        for i, p in enumerate(preds):
            vals = [v for v in d["per_seed_auroc"].get(p, []) if v is not None]
            ax[0, 0].plot(vals, [i] * len(vals), "o", color=colors[p], alpha=0.7, ms=5)
        ax[0, 0].axvline(0.5, color="k", ls=":", lw=0.8)
        ax[0, 0].set_yticks(range(len(preds)))
        ax[0, 0].set_yticklabels(preds)
        ax[0, 0].set(xlabel="AUROC on one held-out seed", title="(a) per seed (ROC curves need per-fact scores)")
    else:
        note(ax[0, 0], "(a) no per-fact scores in forecast.json")
    est = [d["auroc"][p] for p in preds]
    # points with intervals on the whole 0-1 range: bars cut at 0.3 made 0.55 look twice 0.42
    for i, (p, e) in enumerate(zip(preds, est)):
        v = finite(e["value"])
        ax[0, 1].errorbar([v], [i], xerr=yerr([e], (0, 1)), fmt="o", capsize=3, color=colors[p], ms=6)
        ax[0, 1].annotate(f"{v:.2f}", (v, i), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=6.5)
    ax[0, 1].axvline(0.5, color="k", ls=":", lw=0.8)
    ax[0, 1].text(0.5, len(preds) - 0.45, " chance", fontsize=6.5, va="bottom")
    ax[0, 1].set_yticks(range(len(preds)))
    ax[0, 1].set_yticklabels(preds)
    ax[0, 1].set_ylim(-0.6, len(preds) - 0.1)
    ax[0, 1].set(xlabel="AUROC (mean, 95% CI over held-out seeds)", xlim=(0.0, 1.0), title="(b) how well each ranks")
    if d["deciles"]:
        dec = d["deciles"]
        ax[0, 2].bar(range(len(dec)), [x["forgotten"] for x in dec], color="#CC3311", label="observed")
        if all(x.get("risk") is not None and 0 <= x["risk"] <= 1 for x in dec):
            ax[0, 2].plot(range(len(dec)), [x["risk"] for x in dec], "kD", ms=4, label="forecast P(forgotten)")
        if d.get("base_rate") is not None:
            ax[0, 2].axhline(d["base_rate"], color="k", ls=":", lw=0.8, label="all facts")
        ax[0, 2].legend()
        ax[0, 2].set_xticks(range(len(dec)))
        ax[0, 2].set_xticklabels([str(x["bin"] + 1) for x in dec])
        ax[0, 2].set(xlabel="forecast risk decile (1 = safest)", ylabel="share actually forgotten",
                     title="(c) at-risk facts vs what happened")
    else:
        note(ax[0, 2], "(c) no per-fact risk in forecast.json")
    gap = d.get("forecast_minus_fragility") or {}
    extra = (f"; forecast - fragility AUROC {gap['mean']:.3f} [{gap['lo']:.3f}, {gap['hi']:.3f}]"
             if gap.get("mean") is not None and gap.get("lo") is not None else "")
    style.caption(fig, f"{d.get('n_facts', 0)} fact evaluations over {d.get('seeds')} held-out seeds; "
                       f"method {d.get('method') or 'sft'}{extra}")
    return style.save(fig, out, stem)
