"""One look for every figure: fonts, colours per method, CI bands, saving PNG + PDF.

Why a module: a reader compares figures side by side, so "self-distillation" must be the same
colour everywhere, every interval must be drawn the same way (mean line, 95% band or error bar),
and every file must be written atomically (a killed run never leaves half a PDF).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Sequence

from interference.io import number

import matplotlib

if "ipykernel" not in sys.modules:  # files only, no display; a notebook keeps its inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RC = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 7.5,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.6, "figure.dpi": 100, "savefig.dpi": 150,
    "legend.frameon": False, "pdf.fonttype": 42,  # editable text in the PDF
}
# Colour-blind-safe (Tol's bright + muted); the paper's two protagonists get the strongest pair.
METHOD_COLORS = {"sft": "#CC3311", "self_distill": "#0077BB", "freeze": "#EE7733",
                 # freezing arms are named by what still trains (the old freeze_attn trained attention)
                 "attn_only": "#EE7733", "mlp_only": "#009988", "l2_init": "#AA3377", "ewc": "#33BBEE", "replay": "#228833",
                 "lora": "#BBBBBB", "uuid": "#777777", "semantic": "#CC3311", "control": "#999933"}
CYCLE = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#000000"]
SET_COLORS = {"stability": "#0077BB", "plasticity": "#EE7733", "task": "#009988"}
SET_LABELS = {"stability": "held-out known facts (stability)", "plasticity": "new facts (plasticity)",
              "task": "task: Known facts in QA format"}
VERDICT_COLORS = {"main_driver": "#1b7837", "contributes": "#7fbf7b", "not_supported": "#c51b7d",
                  "inconclusive": "#999999"}


def ordered(d: dict, key: str) -> list[tuple[str, dict]]:
    """Items of ``d[key]`` in the config's order: saved JSON sorts its keys, ``d["order"]`` keeps
    the order the config gave (legends, and which end point spans the first axis, depend on it)."""
    items = d[key]
    return [(k, items[k]) for k in d.get("order", list(items)) if k in items]


def apply() -> None:
    plt.rcParams.update(RC)


def color(label: str, i: int = 0) -> str:
    """The colour of a method/arm label (its family's colour), or the i-th of the cycle."""
    if label in METHOD_COLORS:
        return METHOD_COLORS[label]
    family = label.split("@")[0].split("-")[0]
    return METHOD_COLORS.get(family, CYCLE[i % len(CYCLE)])


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.2, **kw):
    apply()
    kw.setdefault("layout", "constrained")  # makes room for outside legends and colour bars
    fig, ax = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
    return fig, ax


def finite(x) -> float:
    """A saved value to plot: missing (null, nan) and infinite values are nan, which matplotlib skips."""
    v = number(x)
    return v if math.isfinite(v) else float("nan")


MARKERS = "os^DvP<>X*"


def band(ax, x: Sequence[float], est: Sequence[dict], label: str, c: str, i: int = 0,
         clip: tuple[float, float] | None = None, **kw) -> None:
    """Mean line with its 95% CI as a shaded band; ``est`` holds {value, low, high} per x.

    ``clip`` bounds the band to a quantity's range (an accuracy's CI from 2 seeds can reach past
    [0, 1]; the data keeps the raw interval). ``i`` picks a marker, so lines that coincide
    (two methods with identical accuracies) stay distinguishable."""
    v = [finite(e.get("value")) for e in est]
    lo = [finite(e.get("low")) if e.get("low") is not None else vi for e, vi in zip(est, v)]
    hi = [finite(e.get("high")) if e.get("high") is not None else vi for e, vi in zip(est, v)]
    if clip is not None:
        lo = [min(max(x, clip[0]), clip[1]) for x in lo]
        hi = [min(max(x, clip[0]), clip[1]) for x in hi]
    kw.setdefault("marker", MARKERS[i % len(MARKERS)])
    kw.setdefault("ms", 3.5)
    ax.plot(x, v, color=c, label=label, **kw)
    ax.fill_between(x, lo, hi, color=c, alpha=0.18, lw=0)


def zoom(ax, est: Sequence[dict], axis: str = "y", pad: float = 0.01, min_span: float = 0.06) -> None:
    """Limit an accuracy axis to where the data and its (clipped) intervals are, never past [0, 1]:
    effects of 2-8 points between methods vanish on a 0-1 axis. At least ``min_span`` wide."""
    vals = [finite(e.get(k)) for e in est for k in ("value", "low", "high") if e.get(k) is not None]
    vals = [min(max(v, 0.0), 1.0) for v in vals if math.isfinite(v)]
    if not vals:
        return
    lo, hi = min(vals) - pad, max(vals) + pad
    if hi - lo < min_span:
        lo = hi - min_span
    lo, hi = max(lo, -0.01), min(hi, 1.01)
    (ax.set_ylim if axis == "y" else ax.set_xlim)(lo, hi)


def yerr(est: Sequence[dict], clip: tuple[float, float] | None = None) -> list[list[float]]:
    """Asymmetric error-bar lengths [below, above] from estimate dicts (0 where no CI), the
    interval optionally bounded to the quantity's range (``clip``, as in ``band``)."""
    below, above = [], []
    for e in est:
        v = finite(e.get("value"))
        lo, hi = finite(e.get("low")), finite(e.get("high"))
        if clip is not None:
            lo, hi = max(lo, clip[0]), min(hi, clip[1])
        below.append(v - lo if math.isfinite(lo) and math.isfinite(v) else 0.0)
        above.append(hi - v if math.isfinite(hi) and math.isfinite(v) else 0.0)
    return [below, above]


def note(ax, text: str) -> None:
    """A panel whose input is missing says so in words instead of being blank."""
    import textwrap
    ax.text(0.5, 0.5, "\n".join(textwrap.fill(t, 48) for t in text.split("\n")), ha="center", va="center",
            transform=ax.transAxes, fontsize=7.5, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def caption(fig, text: str) -> None:
    """A one-line footer saying where the numbers came from (world, seeds)."""
    fig.text(0.01, -0.01, text, fontsize=7, color="#555555", ha="left", va="top")


def save(fig, out: str | Path, stem: str) -> list[Path]:
    """PNG and PDF of ``fig`` into ``out``, each written atomically; closes the figure."""
    from interference.io import save_figure
    return save_figure(fig, out, stem)
