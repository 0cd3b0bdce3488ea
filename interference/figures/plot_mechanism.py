"""Mechanism figures (parameter space, localized interference, attribution, capacity), drawn
only from their data dicts (see ``compute_mechanism`` and ``inputs``)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

import interference.figures.style as style
from interference.figures.style import ordered, SET_COLORS, SET_LABELS, band, color, finite, note, yerr

REGION_LABELS = {"stability": "pre-existing facts kept", "task": "task (QA format) solved",
                 "plasticity": "new facts learned"}


STABILITY_TOLERANCE = 0.01  # the "kept" region: held-out accuracy within one point of its best on the plane


def plot_param_space(d: dict, out: Path, stem: str = "param_space") -> list[Path]:
    """Regions of the plane base + span(two end points) where each set is answered, and the two
    training paths projected onto it (a real 2-D slice of parameter space, not a cartoon)."""
    a, b = np.asarray(d["a"]), np.asarray(d["b"])
    fig, ax = style.figure(2, width=5.0, height=4.6)
    for s in ("stability", "task", "plasticity"):
        acc = np.asarray(d["accuracy"][s], float)
        if not np.isfinite(acc).any():
            continue
        if s == "stability":  # 87-100% everywhere on the plane: "kept" = within a point of the best
            level, rule = np.nanmax(acc) - STABILITY_TOLERANCE, f"accuracy within {STABILITY_TOLERANCE:g} of best"
        else:
            level, rule = d["threshold"] * np.nanmax(acc), f">= {d['threshold']:.0%} of best"
        ax[0, 0].contourf(a, b, acc, levels=[level, 1.01], colors=[SET_COLORS[s]], alpha=0.22)
        ax[0, 0].contour(a, b, acc, levels=[level], colors=[SET_COLORS[s]], linewidths=1.2)
        ax[0, 0].plot([], [], color=SET_COLORS[s], lw=6, alpha=0.4, label=f"{REGION_LABELS[s]} ({rule})")
    stab = np.asarray(d["accuracy"]["stability"], float)
    lo = float(np.nanmin(stab)) if np.isfinite(stab).any() else 0.0
    # the colour scale spans what the plane holds (not 0-1, where 0.87-1.0 was one shade of blue)
    im = ax[0, 1].pcolormesh(a, b, stab, cmap="viridis", vmin=lo, vmax=1, shading="auto")
    levels = [x for x in (0.95, 0.975, 0.99) if lo < x < 1]
    if levels:
        cs = ax[0, 1].contour(a, b, stab, levels=levels, colors="w", linewidths=0.7)
        ax[0, 1].clabel(cs, fmt="%.3f", fontsize=6)
    fig.colorbar(im, ax=ax[0, 1], label="held-out known facts right (accuracy)")
    for k, panel in enumerate((ax[0, 0], ax[0, 1])):
        panel.plot(0, 0, "k*", ms=11, label="base model" if k == 0 else None, zorder=5)
        for i, (label, p) in enumerate(ordered(d, "paths")):
            c = color(label, i)
            panel.plot(p["a"], p["b"], "-o", color=c, ms=3, lw=1.4, zorder=4,
                       label=f"{label} path (off-plane {np.mean(p['off_plane']):.0%} of the update)" if k == 0 else None)
            ea, eb = d["ends"][label]
            panel.plot(ea, eb, "s", color=c, ms=7, mec="k", zorder=6)
        first, second = [k for k, _ in ordered(d, "paths")][:2]
        panel.set(xlabel=f"along the {first} update (L2 distance in parameter space)",
                  ylabel=f"orthogonal, towards the {second} end (L2)")
        panel.set_aspect("equal", adjustable="box")  # equal units: distances in the plane are true distances
    ax[0, 0].set_title("Where each set of facts is answered")
    ax[0, 1].set_title("held-out known accuracy on the same plane")
    fig.legend(loc="outside lower center", ncol=3)
    fig.suptitle(f"A real 2-D slice of parameter space: base (star), end points (squares), training paths "
                 f"(seed {d['seed']}; cos between the two updates {d['cos_updates']:.2f}; "
                 f"{d['n_facts']['stability']} held-out facts per grid point)", fontsize=8.5)
    return style.save(fig, out, stem)


def plot_localized(d: dict, out: Path, stem: str = "localized") -> list[Path]:
    """(a) forgetting by base overlap with the new facts, (b) designed targets vs the rest,
    (c) representation drift over training per method."""
    fig, ax = style.figure(3, width=4.0, height=3.4)
    ov = d.get("overlap")
    if ov:
        bins = [x for x in ov["bins"] if x["overlap"] is not None]
        ax[0, 0].errorbar([x["overlap"] for x in bins], [finite(x["forgetting"]["value"]) for x in bins],
                          yerr=yerr([x["forgetting"] for x in bins], (0, 1)), fmt="o-", color=color(ov["arm"]), capsize=3)
        ax[0, 0].axhline(finite(ov["forgetting"]["value"]), color="k", ls=":", lw=0.8, label="all facts")
        au, fr = ov["auroc_overlap"], ov["auroc_fragility"]
        chance = finite(au.get("low")) <= 0.5 <= finite(au.get("high"))  # say what a chance-level AUROC means
        ax[0, 0].set_title(f"(a) base overlap -> forgetting ({ov['arm']})\nAUROC overlap {finite(au['value']):.2f}"
                           + (f" [{finite(au['low']):.2f}, {finite(au['high']):.2f}]: no better than chance"
                              if chance else "")
                           + f"\nfragility baseline {finite(fr['value']):.2f}")
        ax[0, 0].set(xlabel=f"max cosine to a new fact, layer {ov['layer']} (quantile bin mean)",
                     ylabel="share of held-out known facts forgotten")
        ax[0, 0].legend(loc="upper right")
    else:
        note(ax[0, 0], "no overlap data")
    des = d.get("designed") or {}
    if "arms" in des:
        order = sorted(range(len(des["arms"])), key=lambda i: dose_key(des["arms"][i]))
        arms = [des["arms"][i] for i in order]
        xs = np.arange(len(arms))
        for k, (key, c, lab) in enumerate((("targets", "#CC3311", "targets (overlapped on purpose)"),
                                           ("rest", "#999999", "rest of the known facts"))):
            est = [des[key][i] for i in order]
            ax[0, 1].bar(xs + (k - 0.5) * 0.38, [finite(e["value"]) for e in est], 0.38,
                         yerr=yerr(est, (0, 1)), capsize=2, color=c, label=lab)
        ax[0, 1].set_xticks(xs)
        ax[0, 1].set_xticklabels([a.replace("_", " ") for a in arms], fontsize=7, rotation=40, ha="right",
                                 rotation_mode="anchor")  # eleven arms: level labels overlap
        ax[0, 1].set(ylabel="share of known facts forgotten", xlabel="arm of the designed intervention",
                     title=f"(b) designed overlap: targets vs rest\nlocalized verdict: {des.get('verdict')}")
        top = max([finite(e.get("high")) for k in ("targets", "rest") for e in des[k] if e.get("high") is not None]
                  + [finite(e["value"]) for k in ("targets", "rest") for e in des[k]])
        ax[0, 1].set_ylim(0, 1.3 * top)  # headroom: the legend sits above every bar and interval
        ax[0, 1].legend(loc="upper left", ncol=2, fontsize=6.5)
    else:
        note(ax[0, 1], "(b) designed intervention\n" + des.get("missing", "not available"))
    for i, (label, c) in enumerate(ordered(d, "drift")):
        band(ax[0, 2], c["steps"], c["drift"], label, color(label, i), i=i, clip=(0, 2))
    ax[0, 2].set(xlabel="optimizer steps", ylabel="drift: 1 - cos(h_t, h_base)",
                 title=f"(c) drift of held-out entities, layer {d['layer']}")
    ax[0, 2].legend()
    seeds = f"(a), (c): mean and 95% CI over {d['seeds']} seeds"
    if des.get("seeds") is not None:
        seeds += f"; (b): over the verdict's {des['seeds']} seeds"
    style.caption(fig, f"{seeds}; residual stream at the subject's last token")
    return style.save(fig, out, stem)


# The designed intervention's arms by how much of a target's name a new entity shares: none
# (uuid), pieces from never-watched entities (disjoint), 0, 1 (first/second/last piece), 2;
# each level's variants (frozen, distilled) right after it. Alphabetical order mixed the doses.
DOSE = {"uuid": 0, "disjoint": 1, "share0": 2, "share1": 3, "share2": 4}
VARIANT = {"": 0, "first": 1, "second": 2, "last": 3, "distill": 4, "frozen": 5}


def dose_key(arm: str) -> tuple:
    base = next((k for k in sorted(DOSE, key=len, reverse=True) if arm == k or arm.startswith(k + "_")), None)
    variant = arm[len(base) + 1:] if base else arm
    return (DOSE.get(base, len(DOSE)), VARIANT.get(variant, len(VARIANT)), arm)


GROUP_ROWS = ("embed", "attn", "mlp", "norm", "unembed")


def attribution_matrix(shares: dict) -> tuple[list[str], list[str], np.ndarray]:
    """(rows, columns, values) of a units -> share map: rows are parameter groups, columns the
    layers plus '-' for units without a layer (embeddings, final norm, unembedding)."""
    layers = sorted({int(u.split(".")[1]) for u in shares if "." in u})
    cols = ["-"] + [str(l) for l in layers]
    rows = [g for g in GROUP_ROWS if any(u == g or u.startswith(g + ".") for u in shares)]
    m = np.full((len(rows), len(cols)), np.nan)
    for u, e in shares.items():
        g, _, l = u.partition(".")
        m[rows.index(g), cols.index(l or "-")] = finite(e["value"] if isinstance(e, dict) else e)
    return rows, cols, m


# A unit's share is drawn only when its 95% CI over seeds is narrower than this: self-distillation
# forgets one or two facts per seed, and a "share" of one fact (CI -2..+2) is noise, not structure.
MAX_SHARE_CI_WIDTH = 1.0


def _determined(e) -> bool:
    if not isinstance(e, dict):
        return True
    lo, hi = finite(e.get("low")), finite(e.get("high"))
    return e.get("n", 0) >= 2 and math.isfinite(lo) and math.isfinite(hi) and hi - lo <= MAX_SHARE_CI_WIDTH


def plot_attribution(d: dict, out: Path, stem: str = "attribution") -> list[Path]:
    """Heatmap per method: share of the forgetting undone by reverting each unit to the base.
    Cells whose share is undetermined (CI wider than ``MAX_SHARE_CI_WIDTH``) are left grey."""
    arms = d["arms"]
    fig, ax = style.figure(len(arms), width=3.6, height=3.0)
    im = None
    for k, (label, arm) in enumerate(ordered(d, "arms")):
        shares = {u: e for u, e in arm["share"].items() if _determined(e)}
        rows, cols, m = attribution_matrix(arm["share"])
        _, _, shown = attribution_matrix(shares) if shares else (rows, cols, np.full_like(m, np.nan))
        if shown.shape != m.shape:  # some rows or layers lost every cell: place what is left by name
            shown = np.full_like(m, np.nan)
            for u, e in shares.items():
                g, _, l = u.partition(".")
                shown[rows.index(g), cols.index(l or "-")] = finite(e["value"] if isinstance(e, dict) else e)
        a = ax[0, k]
        a.set_facecolor("#DDDDDD")
        im = a.imshow(np.ma.masked_invalid(shown), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        for (i, j), v in np.ndenumerate(shown):
            if math.isfinite(v):
                a.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if abs(v) > 0.6 else "k")
        a.set_xticks(range(len(cols)))
        a.set_xticklabels(["no layer"] + cols[1:])
        a.set_yticks(range(len(rows)))
        a.set_yticklabels(rows)
        a.grid(False)
        title = f"{label}: forgetting {finite(arm['forgetting']['value']):.3f}"
        if not shares:
            title += "\ntoo few forgotten facts to attribute"
            a.text(0.5, 0.5, "every unit's share is\nundetermined (95% CI\nwider than 1)", transform=a.transAxes,
                   ha="center", va="center", fontsize=8, color="#444444")
        a.set(xlabel="layer", title=title)
    fig.colorbar(im, ax=ax[0, :].tolist(), label="share of forgetting undone by reverting the unit", shrink=0.9)
    style.caption(fig, f"mean over {d['seeds']} seeds; 1 = reverting that unit alone restores every forgotten fact, "
                       f"negative = the revert makes it worse; grey = 95% CI wider than {MAX_SHARE_CI_WIDTH:g}")
    return style.save(fig, out, stem)


CURVE_COLORS = {"uuid": "#777777", "semantic": "#CC3311", "sft": "#CC3311", "joint": "#228833", "drift": "#999933"}


STAT_KINDS = {"share": "shares of forgetting (P)", "slope": "slopes: excess SFT forgetting per doubling",
              "rate": "forgetting rates (share of known facts)"}


def stat_kind(name: str) -> str:
    """Which scale a capacity statistic is on: a share P, a slope per doubling, or a rate."""
    if name.startswith("P") or "share" in name:
        return "share"
    return "slope" if "per doubling" in name or "slope" in name else "rate"


def plot_capacity(d: dict, out: Path, stem: str = "capacity") -> list[Path]:
    """Forgetting vs number of new facts, one colour per arm or key style, one line style per
    model size; and the capacity verdict's headline statistics with their CIs."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    fig, ax = style.figure(2, width=4.6, height=3.6)
    dashes = ["-", "--", ":", "-."]
    counts: set[int] = set()
    for k, (size, curves) in enumerate(sorted(d["curves"].items())):
        for i, (label, pts) in enumerate(curves.items()):
            if not pts:
                continue
            est = [e for _, e in pts]
            counts |= {c for c, _ in pts}
            ax[0, 0].errorbar([c for c, _ in pts], [finite(e["value"]) for e in est], yerr=yerr(est, (0, 1)),
                              fmt="o", ls=dashes[k % 4], color=CURVE_COLORS.get(label.split()[0], color(label, i)),
                              capsize=2.5, label=f"{label}, {size}")
    if counts:
        a = ax[0, 0]
        a.set_xscale("log")
        a.set_xticks(sorted(counts))
        a.xaxis.set_major_formatter(ScalarFormatter())
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set(xlabel="new facts in the SFT set (log scale)", ylabel="share of known facts forgotten",
              title="forgetting vs number of new facts")
        a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=6.5)
    else:
        note(ax[0, 0], "this capacity verdict has no forgetting-by-count series")
    stats = d["statistics"]
    # step counts ("steps uuid d64", "learned_step_sft") have another scale and stay out; the rest
    # are three kinds on three scales (one shared bar axis hid the slopes next to the shares)
    keys = [k for k in stats if not re.search(r"(^|[\s_])steps?($|[\s_])", k)]
    kinds = {kind: [k for k in keys if stat_kind(k) == kind] for kind in STAT_KINDS}
    kinds = {kind: ks for kind, ks in kinds.items() if ks}
    ax[0, 1].remove()
    if kinds:
        sub = ax[0, 1].get_subplotspec().subgridspec(len(kinds), 1, height_ratios=[len(v) + 1.2 for v in kinds.values()])
        for r, (kind, ks) in enumerate(kinds.items()):
            a = fig.add_subplot(sub[r, 0])
            est = [stats[k] for k in ks]
            a.errorbar([finite(e["value"]) for e in est], range(len(ks)), xerr=yerr(est), fmt="o", capsize=2,
                       color="#999933", ms=4)
            a.set_yticks(range(len(ks)), [k.replace("_", " ") for k in ks], fontsize=6.5)
            a.set_ylim(len(ks) - 0.5, -0.5)
            a.axvline(0, color="k", lw=0.6)
            a.set_title(STAT_KINDS[kind], fontsize=8, loc="left")
        a.set_xlabel("value (mean, 95% CI over seeds)")
    else:
        fig.add_subplot(ax[0, 1].get_subplotspec()).text(0.5, 0.5, "no statistics", ha="center")
    e = d["estimate"]
    fig.suptitle(f"capacity: {d.get('verdict')}  (endpoint {finite(e.get('value')):.2f} "
                 f"[{finite(e.get('low')):.2f}, {finite(e.get('high')):.2f}], {d.get('seeds')} seeds)")
    import textwrap
    style.caption(fig, textwrap.fill(f"endpoint: {d.get('endpoint', '')}", 190))  # whole, wrapped: not cut
    return style.save(fig, out, stem)
