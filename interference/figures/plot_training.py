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
    for i, (label, arm) in enumerate(ordered(d, "arms")):
        for k, s in enumerate(("stability", "plasticity", "task")):
            band(ax[0, k], arm["steps"], arm[s], label, color(label, i), i=i, clip=(0, 1), lw=1.3, mfc="none")
    for k, s in enumerate(("stability", "plasticity", "task")):
        ax[0, k].set(xlabel="optimizer steps", ylabel=ACC, title=SET_LABELS[s])
        ax[0, k].set_ylim(-0.03, 1.03)
    ax[0, 2].legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Stability vs plasticity over training, per method "
                 f"(mean and 95% CI over {d['seeds']} seeds)")
    return style.save(fig, out, stem)


def plot_tradeoff(d: dict, out: Path, stem: str = "tradeoff") -> list[Path]:
    """Final new-fact accuracy vs final held-out accuracy for every method and strength."""
    fig, ax = style.figure(1, width=5.6, height=4.0)
    a = ax[0, 0]
    families: dict[str, list[dict]] = {}
    for p in d["points"]:  # a family is a label without its strength: "self_distill@4" -> "self_distill"
        families.setdefault(p["label"].split("@")[0], []).append(p)
    for i, (method, pts) in enumerate(families.items()):
        pts = sorted(pts, key=lambda p: (p["strength"] is None, p["strength"] or 0))
        c = color(method, i)
        xs = [finite(p["plasticity"]["value"]) for p in pts]
        ys = [finite(p["stability"]["value"]) for p in pts]
        a.errorbar(xs, ys, xerr=yerr([p["plasticity"] for p in pts], (0, 1)),
                   yerr=yerr([p["stability"] for p in pts], (0, 1)),
                   fmt="o-" if len(pts) > 1 else "o", color=c, capsize=2.5, ms=5, lw=0.9, label=method)
        for p, x, y in zip(pts, xs, ys):
            if p["strength"] is not None:
                a.annotate(f"{p['strength']:g}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6.5,
                           color=c)
    a.set(xlabel="new facts learned (plasticity, final accuracy)",
          ylabel="held-out known facts right (stability, final accuracy)",
          title=f"Stability-plasticity trade-off (mean, 95% CI over {d['seeds']} seeds)")
    a.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), title="method (numbers: strength)")
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
    """Grouped bars: task, plasticity and stability at the end of training per trained subset."""
    arms = d["arms"]
    fig, ax = style.figure(1, width=max(5.5, 1.15 * len(arms) + 1.5), height=3.6)
    a = ax[0, 0]
    w = 0.26
    xs = np.arange(len(arms))
    for k, s in enumerate(("task", "plasticity", "stability")):
        est = [r[s] for r in arms]
        a.bar(xs + (k - 1) * w, [finite(e["value"]) for e in est], w, yerr=yerr(est, (0, 1)), capsize=2,
              color=SET_COLORS[s], label=SET_LABELS[s])
    a.set_xticks(xs)
    a.set_xticklabels([f"{r['label']}\n({r['n_trainable'] / 1e3:.0f}k params)" if r.get("n_trainable") else r["label"]
                       for r in arms], fontsize=7)
    a.set(ylabel=ACC, ylim=(0, 1.08),
          title=f"What trains decides what is learned and what is kept (mean, 95% CI over {d['seeds']} seeds)")
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3)
    return style.save(fig, out, stem)
