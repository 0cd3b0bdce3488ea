"""Training-dynamics figures, drawn only from their data dicts (see ``compute_training``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import interference.figures.style as style
from interference.figures.style import ordered, SET_COLORS, SET_LABELS, band, color, finite, yerr

ACC = "accuracy (share of facts right)"


def plot_curves(d: dict, out: Path, stem: str = "curves") -> list[Path]:
    """Stability and plasticity (and task) over training, one line per method, 95% CI bands."""
    fig, ax = style.figure(3, width=3.9)
    arms = ordered(d, "arms")
    for i, (label, arm) in enumerate(arms):
        top = label == "sft"  # the reference every method is read against: drawn last, on top
        for k, s in enumerate(("stability", "plasticity", "task")):
            band(ax[0, k], arm["steps"], arm[s], label, color(label, i), i=i, clip=(0, 1), lw=2.0 if top else 1.1,
                 mfc="none", zorder=5 if top else 2)
    for k, s in enumerate(("stability", "plasticity", "task")):
        ax[0, k].set(xlabel="optimizer steps", ylabel=ACC, title=SET_LABELS[s])
        if s == "plasticity":
            ax[0, k].set_ylim(-0.03, 1.03)  # climbs from ~0 to 1: the whole range is the story
        else:  # held-out and task accuracy move a few points: an axis around the data shows them
            style.zoom(ax[0, k], [e for _, arm in arms for e in arm[s]])
    ax[0, 2].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Stability vs plasticity over training, per method "
                 f"(mean and 95% CI over {d['seeds']} seeds)")
    return style.save(fig, out, stem)


# What a method's "strength" is, in its own unit (one legend for all of them mixed the units).
STRENGTH_NAMES = {"self_distill": "KL weight", "l2_init": "L2 weight", "replay": "replay ratio", "ewc": "EWC weight"}


def plot_tradeoff(d: dict, out: Path, stem: str = "tradeoff") -> list[Path]:
    """Final held-out accuracy (left) and new-fact accuracy (right) for every method and strength:
    one row each, a method's strengths together in increasing order and named in their own unit.
    Rows rather than one scatter: most arms learn every new fact, so a scatter stacked them at
    x = 1 with their labels on top of each other."""
    families: dict[str, list[dict]] = {}
    for p in d["points"]:  # a family is a label without its strength: "self_distill@4" -> "self_distill"
        families.setdefault(p["label"].split("@")[0], []).append(p)
    rows = []
    for i, (fam, pts) in enumerate(families.items()):
        for p in sorted(pts, key=lambda p: (p["strength"] is None, p["strength"] or 0)):
            name = fam if p["strength"] is None else f"{fam}, {STRENGTH_NAMES.get(fam, 'strength')} {p['strength']:g}"
            rows.append((name, p, color(fam, i)))
    fig, ax = style.figure(2, width=3.3, height=0.36 * len(rows) + 1.3, sharey=True)
    ys = np.arange(len(rows))
    for k, (s, title) in enumerate((("stability", "held-out known facts right (stability)"),
                                    ("plasticity", "new facts learned (plasticity)"))):
        a = ax[0, k]
        for y, (name, p, c) in zip(ys, rows):
            v = finite(p[s]["value"])
            a.errorbar([v], [y], xerr=yerr([p[s]], (0, 1)), fmt="o", capsize=2.5, color=c, ms=5)
            a.annotate(f"{v:.3f}", (v, y), textcoords="offset points", xytext=(0, 4.5), ha="center", fontsize=6.5)
        style.zoom(a, [p[s] for _, p, _ in rows], axis="x", pad=0.015)
        a.set(xlabel="final accuracy", title=title)
        a.grid(axis="x", alpha=0.3)
    ax[0, 0].set_yticks(ys, [r[0] for r in rows], fontsize=7)
    ax[0, 0].set_ylim(len(rows) - 0.5, -0.5)
    fig.suptitle(f"Stability-plasticity trade-off per method and strength (mean, 95% CI over {d['seeds']} seeds)")
    return style.save(fig, out, stem)


def plot_hallucination(d: dict, out: Path, stem: str = "hallucination") -> list[Path]:
    """Hallucination and forgetting of base-known facts vs the Unknown share of the SFT set."""
    rows = d["fractions"]
    fig, ax = style.figure(2, width=4.4)
    x = [100 * r["unknown_fraction"] for r in rows]
    for key, c, lab in (("forgetting", "#0077BB", "forgotten (any wrong answer)"),
                        ("hallucination", "#CC3311", "hallucinated (confident wrong answer)")):
        est = [r[key] for r in rows]
        ax[0, 0].errorbar(x, [finite(e["value"]) for e in est], yerr=yerr(est, (0, 1)), fmt="o-", color=c, capsize=3,
                          label=lab)
    ax[0, 0].set(xlabel="Unknown facts in the SFT set (%)", ylabel="share of base-known held-out facts",
                 title="Unknown SFT examples and hallucination")
    ax[0, 0].set_xticks(x)
    ax[0, 0].legend()
    cmap = __import__("matplotlib").colormaps["viridis"]
    for k, r in enumerate(rows):
        band(ax[0, 1], r["steps"], r["stability_curve"], f"{100 * r['unknown_fraction']:.0f}% Unknown",
             cmap(k / max(1, len(rows) - 1)), i=k, clip=(0, 1), lw=1.3)
    ax[0, 1].set(xlabel="optimizer steps", ylabel="held-out known facts right (accuracy)",
                 title="held-out accuracy over training")
    ax[0, 1].legend()
    fig.suptitle(f"Hallucination vs share of Unknown facts (SFT; mean, 95% CI over {d['seeds']} seeds)")
    return style.save(fig, out, stem)


def plot_freezing(d: dict, out: Path, stem: str = "freezing") -> list[Path]:
    """Task, plasticity and stability at the end of training per trained subset: one row per subset,
    one panel per set, each axis around its data (bars from 0 hid the 2-8 point differences)."""
    arms = d["arms"]
    sets = ("task", "plasticity", "stability")
    fig, ax = style.figure(3, width=2.6, height=0.42 * len(arms) + 1.3, sharey=True)
    ys = np.arange(len(arms))
    for k, s in enumerate(sets):
        a = ax[0, k]
        est = [r[s] for r in arms]
        xs = [finite(e["value"]) for e in est]
        a.errorbar(xs, ys, xerr=yerr(est, (0, 1)), fmt="o", capsize=2.5, color=SET_COLORS[s])
        for x, y in zip(xs, ys):
            a.annotate(f"{x:.3f}", (x, y), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=6.5)
        style.zoom(a, est, axis="x", pad=0.015)
        a.set(xlabel=ACC, title=SET_LABELS[s])
        a.grid(axis="x", alpha=0.3)
    ax[0, 0].set_yticks(ys, [f"{r['label']} ({r['n_trainable'] / 1e3:.0f}k params)" if r.get("n_trainable")
                             else r["label"] for r in arms], fontsize=7)
    ax[0, 0].set_ylim(len(arms) - 0.5, -0.5)  # the config's order, top to bottom
    fig.suptitle(f"What trains decides what is learned and what is kept (mean, 95% CI over {d['seeds']} seeds)")
    return style.save(fig, out, stem)
