"""Figures, one function per figure, drawn from saved results only (never retrain in a plot).

Each function takes what a run wrote (a verdict dict, a summary dict) and an output directory,
saves PNG + PDF, and returns the paths.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VERDICT_COLORS = {"main_driver": "#1b7837", "contributes": "#7fbf7b", "not_supported": "#c51b7d",
                  "inconclusive": "#999999"}


def _save(fig, out: Path, stem: str) -> list[Path]:
    from interference.io import save_figure
    return save_figure(fig, out, stem, dpi=130)


def _bar(ax, labels, ests, color="#4477aa", chance=None):
    """Bars of estimate dicts {value, low, high} with their CI as error bars."""
    vals = [e["value"] if e and e.get("value") is not None else float("nan") for e in ests]
    lo = [v - (e.get("low") if e.get("low") is not None else v) for v, e in zip(vals, ests)]
    hi = [(e.get("high") if e.get("high") is not None else v) - v for v, e in zip(vals, ests)]
    ax.bar(range(len(vals)), vals, yerr=[lo, hi], color=color, capsize=3)
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels(labels, fontsize=6.5)
    if chance is not None:
        ax.axhline(chance, ls="--", color="k", lw=0.8)


def _title(fig, v: dict) -> None:
    s = v["share"]
    fmt = lambda x: "nan" if x is None else f"{x:.2f}"  # noqa: E731
    fig.suptitle(f"{v['hypothesis']}: {v['verdict']}  (share {fmt(s['value'])} "
                 f"[{fmt(s['low'])}, {fmt(s['high'])}], {s['n']} seeds)", fontsize=10)


# ------------------------------------------------------------------ hypotheses
def plot_localized(v: dict, out: Path) -> list[Path]:
    """Dose-response contrast per arm, the signature against its uuid null arm, patching per layer,
    and per-fact predictor AUROCs (see interference.hypotheses.localized)."""
    st = v["statistics"]
    get = lambda k: st.get(k) or {"value": float("nan"), "low": None, "high": None}  # noqa: E731
    fig, ax = plt.subplots(1, 4, figsize=(18, 3.6))
    arms = v.get("config", {}).get("arms") or []
    ests = [get(f"learned/{a}/contrast") for a in arms]
    # each arm's seed count beside its name: a real model runs its secondary arms on fewer seeds
    _bar(ax[0], [f"{a} (n={e.get('n', '?')})" for a, e in zip(arms, ests)], ests)
    plt.setp(ax[0].get_xticklabels(), rotation=40, ha="right")
    ax[0].axhline(0, color="k", lw=0.8)
    ax[0].set_ylabel("forgetting(targets) - forgetting(rest)")
    ax[0].set_title("within-run targeting, equal learning", fontsize=9)
    _bar(ax[1], ["share2", "uuid (null)"], [get("learned/signature/rate_arm"), get("learned/signature/rate_null")],
         color="#cc6677")
    ax[1].set_title("forgotten targets answering the look-alike's value", fontsize=9)
    layers = sorted({int(k.rsplit("L", 1)[1]) for k in st if k.startswith("patch/share2/targets/own/")})
    for key, lab in (("patch/share2/targets/own", "own base state, share2 targets"),
                     ("patch/share2/targets/control", "other entity's state (control)"),
                     ("patch/uuid/all/own", "own base state, uuid arm")):
        es = [get(f"{key}/L{layer}") for layer in layers]
        vals = [e["value"] if e["value"] is not None else float("nan") for e in es]
        err = [[(e["value"] - e["low"]) if e["low"] is not None and e["value"] is not None else 0 for e in es],
               [(e["high"] - e["value"]) if e["high"] is not None and e["value"] is not None else 0 for e in es]]
        ax[2].errorbar(layers, vals, yerr=err, marker="o", capsize=3, label=lab)
    ax[2].set_xlabel("layer patched (resid_post, subject's last token)")
    ax[2].set_ylabel("forgotten facts restored")
    ax[2].legend(fontsize=7)
    ax[2].set_title("activation patching", fontsize=9)
    labels, ests = [], []
    for arm, t in v.get("predictors", {}).items():
        if "baseline_plus_all" in t:
            labels += [f"fragility\n{arm}", f"+ all\n{arm}"]
            ests += [t["baseline_plus_all"]["auroc_baseline"], t["baseline_plus_all"]["auroc_full"]]
    if ests:
        _bar(ax[3], labels, ests, color="#117733", chance=0.5)
        ax[3].set_ylim(0.4, 1.0)
    ax[3].set_title("per-fact AUROC, held-out seeds", fontsize=9)
    _title(fig, v)
    # room for the suptitle; without a layout pass the patching panel's y label ran into the
    # signature panel's bars
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return _save(fig, out, "localized") + plot_localized_patching(v, out)


PATCH_DONORS = (("own", "own base state", "o-"), ("control", "other entity's state", "s--"),
                ("mean", "mean state of other entities", "x:"))


def plot_localized_patching(v: dict, out: Path) -> list[Path]:
    """The mended patching instrument: per layer (embedding output, then every block), the share of
    forgotten facts restored by the fact's own base state and by each control, one panel per
    position set (columns) and patched group (rows: share2 targets, share2 rest, uuid). A verdict
    made before the mended instrument has none of these statistics and gets no figure."""
    st = v["statistics"]
    layers = v.get("patching", {}).get("layers") or []
    sets = ("subject", "shared", "subject_last")
    rows = [(a, g) for a, g in (("share2", "targets"), ("share2", "rest"), ("uuid", "all"))
            if any(k.startswith(f"patch/{a}/{g}/{s}/own/") for k in st for s in sets)]
    if not layers or not rows:
        return []
    fig, ax = plt.subplots(len(rows), len(sets), figsize=(4.2 * len(sets), 2.8 * len(rows)), squeeze=False,
                           sharey=True)
    xs = np.arange(len(layers))
    for r, (arm, g) in enumerate(rows):
        for c, pos in enumerate(sets):
            a = ax[r][c]
            keys = [f"patch/{arm}/{g}/{pos}/own/{lab}" for lab in layers]
            if not any(k in st for k in keys):
                a.text(0.5, 0.5, "not applicable\n(no shared piece)", ha="center", va="center",
                       transform=a.transAxes, fontsize=8, color="#777777")
            else:
                for j, (donor, lab, fmt) in enumerate(PATCH_DONORS):
                    es = [st.get(f"patch/{arm}/{g}/{pos}/{donor}/{x}") or {} for x in layers]
                    _errbar(a, xs + (j - 1) * 0.08, es, fmt, lab)
            a.set_xticks(xs)
            a.set_xticklabels(layers, fontsize=7)
            a.set_ylim(-0.05, 1.05)
            a.set_title(f"{arm} {g}: {pos.replace('_', ' ')}", fontsize=8.5)
            if c == 0:
                a.set_ylabel("forgotten facts restored")
    ax[0][0].legend(fontsize=6.5)
    fig.suptitle("activation patching of base states into the fine-tuned model (mean, 95% CI over seeds)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "localized_patching")


def _errbar(ax, xs, ests, fmt, label, color=None) -> list[float]:
    """Estimate dicts {value, low, high} as points with their CI; a missing value is nan and a
    missing bound no bar. Returns the values drawn."""
    vals = [e["value"] if e.get("value") is not None else float("nan") for e in ests]
    err = [[max(0.0, v - e["low"]) if e.get("low") is not None and np.isfinite(v) else 0 for v, e in zip(vals, ests)],
           [max(0.0, e["high"] - v) if e.get("high") is not None and np.isfinite(v) else 0 for v, e in zip(vals, ests)]]
    ax.errorbar(xs, vals, yerr=err, fmt=fmt, capsize=3, label=label, color=color)
    return vals


def plot_capacity(v: dict, out: Path) -> list[Path]:
    """(a) forgetting vs new facts per size, plain SFT vs joint training vs drift control; (b) the
    persistence of every cell and the pooled endpoint."""
    grid, per = v["series"]["grid"]["default"], v["series"].get("facts_per_entity", 1)
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
    names, ests = [], []
    for size, rows in grid.items():
        counts = sorted(rows, key=int)
        for arm, fmt in (("sft", "o-"), ("joint", "s--"), ("drift", "x:")):
            _errbar(ax[0], [int(c) * per for c in counts], [rows[c][f"forgetting_{arm}"] for c in counts], fmt,
                    f"{arm}, {size}")
        for c in counts:
            names.append(f"{size}\nx{c}")
            ests.append(rows[c]["persistence"])
    ax[0].set_xscale("log")
    ax[0].set_xlabel(f"new facts ({v['series'].get('steps')} steps each)")
    ax[0].set_ylabel("forgetting of known facts")
    ax[0].legend(fontsize=6.5)
    ax[0].set_title("plain SFT vs joint training (replay)", fontsize=9)
    _bar(ax[1], names + ["pooled\n(endpoint)"], ests + [v["endpoint"]], color="#999933")
    ax[1].axhline(0.5, ls=":", color="#1b7837", lw=0.8)
    ax[1].axhline(0.1, ls=":", color="#c51b7d", lw=0.8)
    ax[1].set_ylabel("P: forgetting that persists\nunder joint training")
    ax[1].set_title("persistence per (size, count) cell", fontsize=9)
    _title(fig, v)
    return _save(fig, out, "capacity")


def plot_capacity_sweep(v: dict, out: Path) -> list[Path]:
    """Capacity on one real model (``hypotheses.capacity_sweep``): (a) forgetting of the watched
    facts vs new uuid facts, plain SFT vs joint training vs Known-only drift; (b) the excess
    forgetting per count and the pooled endpoint P."""
    sweep = v["series"]["sweep"]
    counts = sorted(sweep, key=int)
    xs = [sweep[c]["facts"] for c in counts]
    fig, ax = plt.subplots(1, 2, figsize=(12, 3.8))
    for arm, fmt in (("sft", "o-"), ("joint", "s--"), ("drift", "x:")):
        _errbar(ax[0], xs, [sweep[c][f"forgetting_{arm}"] for c in counts], fmt, arm)
    ax[0].set_xscale("log")
    ax[0].set_xlabel("new uuid facts (each count: the same epochs)")
    ax[0].set_ylabel("forgetting of known facts")
    ax[0].legend(fontsize=7, loc="upper left")
    tw = ax[0].twinx()  # whether the new facts were learned: the rule's required check, beside what it costs
    for arm, fmt in (("sft", "o-"), ("joint", "s--")):
        tw.plot(xs, [sweep[c][f"plasticity_{arm}"]["value"] for c in counts], fmt, color="0.6", lw=1, ms=3,
                label=f"new facts learned, {arm}")
    tw.axhline(0.95, color="0.6", lw=0.6, ls=":")
    tw.set_ylim(0, 1.05)
    tw.set_ylabel("share of new facts learned (grey; check at 0.95)", color="0.45", fontsize=8)
    tw.legend(fontsize=6, loc="center left")
    ax[0].set_title("one model, a count sweep", fontsize=9)
    _bar(ax[1], [f"{x} facts" for x in xs] + ["P pooled\n(endpoint)"],
         [sweep[c]["excess_sft"] for c in counts] + [v["endpoint"]], color="#999933")
    ax[1].axhline(0, color="k", lw=0.8)
    ax[1].set_ylabel("excess SFT forgetting (f_sft - f_drift);\nlast bar: P")
    ax[1].set_title("what learning the new facts costs", fontsize=9)
    _title(fig, v)
    fig.tight_layout()
    return _save(fig, out, "capacity")


def plot_behavior_cloning(v: dict, out: Path) -> list[Path]:
    """(a) confident wrong answers on base-known watched facts per arm; (b) confident answers to
    never-seen entities' questions per arm (the cloned behaviour)."""
    st, arms = v["statistics"], v["series"]["arms"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
    _bar(ax[0], arms, [st[f"hallucination_{a}"] for a in arms])
    ax[0].set_ylabel("confident wrong answers\n(share of base-known facts)")
    ax[0].set_title("watched facts sharing nothing with the new ones", fontsize=9)
    _bar(ax[1], arms + ["base"], [st[f"never_seen_confident_{a}"] for a in arms] + [st["never_seen_confident_base"]],
         color="#117733")
    ax[1].set_ylabel("share answered confidently")
    ax[1].set_title("questions about never-seen entities", fontsize=9)
    _title(fig, v)
    return _save(fig, out, "behavior_cloning")


def plot_culprits(v: dict, out: Path) -> list[Path]:
    """(a) rescue rate of the forgotten at-risk targets per removal strategy (and of the kept half,
    whose culprits stayed), (b) rescue of the at-risk facts by targeted vs random replay; each at
    equal learning (the endpoint's read) and at equal steps, with 95% CIs clipped to [0, 1] (a
    rescue rate is a share) (see interference.hypotheses.culprits)."""
    st = v["statistics"]
    nan = {"value": float("nan"), "low": None, "high": None}
    fig, ax = plt.subplots(1, 2, figsize=(10.5, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    panels = [(ax[0], ["culprits\nremoved", "random\nremoved", "fragility-\naimed", "kept half\n(culprits arm)"],
               ["rescue_culprits_targets", "rescue_random_targets", "rescue_fragility_targets", "rescue_culprits_kept"],
               "removing 5% of the SFT set", "rescue rate (share of SFT's\nforgotten at-risk facts kept)"),
              (ax[1], ["targeted\nreplay", "random\nreplay"],
               ["rescue_replay_targeted_at_risk", "rescue_replay_random_at_risk"],
               "replaying 5% of the SFT set's size", "rescue rate of at-risk facts")]
    for a, labels, keys, title, ylabel in panels:
        x = np.arange(len(keys))
        for dx, sfx, color, name in ((-0.19, "", "#4477aa", "equal learning (endpoint)"),
                                     (0.19, "_step_matched", "#bbbbbb", "equal steps")):
            ests = [st.get(k + sfx) or nan for k in keys]
            val = np.array([np.nan if e.get("value") is None else e["value"] for e in ests], dtype=float)
            lo = np.clip([val[i] if e.get("low") is None else e["low"] for i, e in enumerate(ests)], 0, 1)
            hi = np.clip([val[i] if e.get("high") is None else e["high"] for i, e in enumerate(ests)], 0, 1)
            a.bar(x + dx, val, width=0.36, color=color, label=name,
                  yerr=[np.maximum(val - lo, 0), np.maximum(hi - val, 0)], capsize=3)
        a.set_xticks(x)
        a.set_xticklabels(labels, fontsize=7)
        a.set_ylim(0, 1.05)
        a.set_title(title, fontsize=9)
        a.set_ylabel(ylabel)
    ax[0].legend(fontsize=7, loc="upper left")
    _title(fig, v)
    return _save(fig, out, "culprits")


def plot_aimed_replay(v: dict, out: Path) -> list[Path]:
    """(a) share of SFT's excess forgetting recovered against the replay budget, forecast-aimed vs
    random, with the fragility baseline and self-distillation at their own points, 95% CIs; (b) the
    same counted only on facts no arm replayed (what rehearsal saves beyond the rehearsed facts)
    (see interference.hypotheses.aimed_replay)."""
    from interference.hypotheses.aimed_replay import PRIMARY_BUDGET, arm_name
    st, ser = v["statistics"], v["series"]
    budgets = [100 * b for b in ser["budgets"]]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for a, prefix, title in ((ax[0], "rec_", "all watched facts the base knew"),
                             (ax[1], "rec_never_replayed_", "facts no arm replayed")):
        for order, color, dx in (("targeted", "#4477aa", -0.12), ("random", "#999999", 0.12)):
            ests = [st.get(f"{prefix}{arm_name(order, b)}") or {} for b in ser["budgets"]]
            val = np.array([np.nan if e.get("value") is None else e["value"] for e in ests], dtype=float)
            lo = np.array([np.nan if e.get("low") is None else e["low"] for e in ests], dtype=float)
            hi = np.array([np.nan if e.get("high") is None else e["high"] for e in ests], dtype=float)
            if np.isfinite(val).any():
                a.errorbar([b + dx for b in budgets], val, yerr=[val - lo, hi - val], color=color, marker="o", capsize=3,
                           label=f"{order} replay")
        for arm, color, marker, label in ((arm_name("fragile", PRIMARY_BUDGET), "#ee6677", "s",
                                           "fragile replay (base log-prob)"),
                                          ("self_distill", "#228833", "D", "self-distillation (no replay)")):
            e = st.get(f"{prefix}{arm}") or {}
            if e.get("value") is not None:
                x = 100 * PRIMARY_BUDGET if arm != "self_distill" else 0.0
                a.errorbar([x], [e["value"]], yerr=[[e["value"] - (e.get("low") or e["value"])],
                                                     [(e.get("high") or e["value"]) - e["value"]]],
                           color=color, marker=marker, capsize=3, ls="none", label=label)
        a.axhline(0, color="k", lw=0.8)
        a.axhline(0.5, color="k", lw=0.6, ls=":")
        a.set_xlabel("replay budget (% of the SFT set's size)")
        a.set_title(title, fontsize=9)
    ax[0].set_ylabel("share of SFT's excess forgetting\nrecovered (equal learning)")
    ax[0].legend(fontsize=7, loc="best")
    _title(fig, v)
    return _save(fig, out, "aimed_replay")


SHARE_COLORS = {"localized": "#4477aa", "capacity": "#ee6677", "behavior_cloning": "#228833"}


def _grouped_bars(ax, series: dict[str, list]) -> None:
    """One group of bars per position, one bar per series (label -> estimate dicts, one per
    position, None for a missing one), each with its CI as an error bar."""
    width_bar = 0.8 / max(1, len(series))
    for i, (label, ests) in enumerate(series.items()):
        es = [e or {"value": np.nan, "low": None, "high": None} for e in ests]
        val = np.array([e["value"] if e["value"] is not None else np.nan for e in es], float)
        err = [[val[k] - e["low"] if e["low"] is not None else 0 for k, e in enumerate(es)],
               [e["high"] - val[k] if e["high"] is not None else 0 for k, e in enumerate(es)]]
        ax.bar(np.arange(len(es)) + (i - (len(series) - 1) / 2) * width_bar, val, width_bar, yerr=err,
               capsize=2, label=label)


def plot_decomposition(v: dict, out: Path) -> list[Path]:
    """Each hypothesis' share of the same excess forgetting against the width (equal steps, then
    equal learning), with 95% CIs and the decision bands, and every arm's forgetting per width."""
    from interference.hypotheses.decomposition import SHARES  # hypothesis -> its share's letter
    widths = [int(w) for w in v["series"]["widths"]]
    by = v["series"]["by_width"]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for k, (suffix, title) in enumerate((("", "equal steps (endpoint)"), ("_learned", "equal learning"))):
        for j, (h, s) in enumerate(SHARES.items()):
            es = [by[str(w)]["shares"][s + suffix] for w in widths]
            x = [np.log2(w) + (j - 1) * 0.06 for w in widths]
            val = _errbar(ax[k], x, es, "o-", f"{h} ({s})", color=SHARE_COLORS[h])
            words = v["verdicts"]
            for xi, yi, w in zip(x, val, widths):
                word = words[str(w)]["step_matched" if not suffix else "learning_matched"][h]
                if not np.isfinite(yi):
                    continue
                off = yi < -0.55 or yi > 1.35  # off the panel: a marker at its edge with the value written out
                yd = min(max(yi, -0.55), 1.35)
                if off:
                    ax[k].plot([xi], [yd], marker="v" if yi < 0 else "^", color=SHARE_COLORS[h], ms=8)
                ax[k].annotate(word.replace("_", " ") + (f" ({yi:.2f}, off scale)" if off else ""), (xi, yd), fontsize=6,
                               xytext=(3, 3), textcoords="offset points", color=VERDICT_COLORS.get(word, "k"))
        ax[k].set_ylim(-0.6, 1.4)  # shares live in [0, 1]; a wider interval runs off the panel (its numbers are in the table)
        ax[k].axhspan(0.5, 1.4, color="#1b7837", alpha=0.07)
        ax[k].axhline(0, color="k", lw=0.8)
        ax[k].axhline(0.1, color="#c51b7d", lw=0.8, ls=":")
        ax[k].set_xticks([np.log2(w) for w in widths])
        ax[k].set_xticklabels([f"d{w}" for w in widths])
        ax[k].set_xlabel("width (d_model)")
        ax[k].set_ylabel("share of E = F[sem] - F[drift]")
        ax[k].set_title(title, fontsize=9)
        ax[k].legend(fontsize=7)
    arms = [a for a in ("sem", "uuid", "replay", "drift", "sem_known", "idk_known", "sd_sem", "sd_uuid")
            if any(f"F_{a}_d{w}" in v["statistics"] for w in widths)]
    st = v["statistics"]
    _grouped_bars(ax[2], {f"d{w}": [st.get(f"F_{a}_d{w}") for a in arms] for w in widths})
    ax[2].set_xticks(range(len(arms)))
    ax[2].set_xticklabels([a.replace("_", "\n") for a in arms], fontsize=7)
    ax[2].set_ylabel("forgetting of base-known watched facts")
    ax[2].set_title("every arm, equal steps (replay: its long run)", fontsize=9)
    ax[2].legend(fontsize=7)
    by = v.get("seeds_by_width")  # a verdict joined from runs of different widths
    seeds = (", ".join(f"d{w}: {by[w]}" for w in sorted(by, key=int)) + " seeds") if by else f"{v.get('seeds')} seeds"
    fig.suptitle(f"decomposition: {v['verdict']} ({seeds})", fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "decomposition")


def plot_bc_self(v: dict, out: Path, beside: dict | None = None) -> list[Path]:
    """bc_self's G against the width with its 95% CI, words and the common rule's bands; with
    ``beside`` (a decomposition verdict of the same world), its L and C at the widths they share,
    faint, so the three shares of one excess stand on one axis; and every arm's forgetting."""
    widths = [int(w) for w in v["series"]["widths"]]
    by = v["series"]["by_width"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    x = [np.log2(w) for w in widths]
    if beside is not None:
        from interference.hypotheses.decomposition import SHARES
        bw = beside["series"]["by_width"]
        for j, (h, s) in enumerate(SHARES.items()):
            if h == "behavior_cloning":
                continue  # its idk arm's B counts abstentions as damage; G is what this figure shows instead
            ws = [w for w in widths if str(w) in bw]
            _errbar(ax[0], [np.log2(w) - 0.06 * (j + 1) for w in ws], [bw[str(w)]["shares"][s] for w in ws], "o--",
                    f"{h} ({s}), decomposition", color=SHARE_COLORS[h])
            ax[0].get_lines()[-1].set_alpha(0.45)
    vals = _errbar(ax[0], x, [by[str(w)]["G"] for w in widths], "s-", "behavior_cloning (G), self arm",
                   color=SHARE_COLORS["behavior_cloning"])
    for xi, yi, w in zip(x, vals, widths):
        word = v["words"][str(w)]["step_matched"]
        if np.isfinite(yi):
            ax[0].annotate(word.replace("_", " "), (xi, yi), fontsize=7, xytext=(4, -10), textcoords="offset points",
                           color=VERDICT_COLORS.get(word, "k"))
    ax[0].set_ylim(-0.1, 1.1)
    ax[0].axhspan(0.5, 1.1, color="#1b7837", alpha=0.07)
    ax[0].axhline(0, color="k", lw=0.8)
    ax[0].axhline(0.1, color="#c51b7d", lw=0.8, ls=":")
    ax[0].set_xticks(x)
    ax[0].set_xticklabels([f"d{w}" for w in widths])
    ax[0].set_xlabel("width (d_model)")
    ax[0].set_ylabel("share of E = F[sem] - F[drift], equal steps")
    ax[0].set_title("shares of one excess forgetting", fontsize=9)
    ax[0].legend(fontsize=7)
    arms = v["series"]["arms"]
    _grouped_bars(ax[1], {f"d{w}": [by[str(w)][f"F_{a}"] for a in arms] for w in widths})
    ax[1].set_xticks(range(len(arms)))
    ax[1].set_xticklabels(arms)
    ax[1].set_ylabel("forgetting of base-known watched facts")
    ax[1].set_title(f"every arm after {v['series']['steps']} steps", fontsize=9)
    ax[1].legend(fontsize=7)
    seeds = v.get("seed_numbers") or []
    fig.suptitle(f"bc_self: behaviour without content, seeds {seeds[0]}-{seeds[-1]}" if seeds else "bc_self", fontsize=10)
    fig.tight_layout()
    return _save(fig, out, "bc_self")


def plot_consolidation(t: dict, out: Path, stem: str = "consolidation") -> list[Path]:
    """Each hypothesis' share of the same excess against the base's consolidation level (equal
    steps, the endpoint's read), with 95% CIs and the common rule's bands; the slope per doubling
    in the legend (``decomposition.consolidation_trend``)."""
    from interference.hypotheses.decomposition import SHARES
    levels = [float(c) for c in t["levels"]]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for j, (h, s) in enumerate(SHARES.items()):
        es = [t["by_level"][str(c)]["shares"][s] for c in levels]
        x = [np.log2(c) + (j - 1) * 0.05 for c in levels]
        sl = t["slope_per_doubling"][h]
        label = f"{h} ({s}); per doubling {sl['value']:+.3f}" if sl.get("value") is not None else f"{h} ({s})"
        vals = [e["value"] if e.get("value") is not None else np.nan for e in es]
        if any(np.isfinite(v) and not -0.6 <= v <= 1.4 for v in vals):  # off the panel (behavior cloning's runs
            label += " (off scale: " + ", ".join(f"{v:.2f}" for v in vals) + ")"  # far below 0): values in the legend
        _errbar(ax[0], x, es, "o-", label, color=SHARE_COLORS[h])
    ax[0].set_ylim(-0.6, 1.4)
    ax[0].axhspan(0.5, 1.4, color="#1b7837", alpha=0.07)
    ax[0].axhline(0, color="k", lw=0.8)
    ax[0].axhline(0.1, color="#c51b7d", lw=0.8, ls=":")
    ax[0].set_xticks([np.log2(c) for c in levels])
    ax[0].set_xticklabels([f"{c:g}x" for c in levels])
    ax[0].set_xlabel("consolidation (steps after memorising, x the memorisation phase)")
    ax[0].set_ylabel("share of E = F[sem] - F[drift]")
    ax[0].set_title(f"d{t['width']}, equal steps, seeds {t['seeds']}", fontsize=9)
    ax[0].legend(fontsize=7)
    _errbar(ax[1], [np.log2(c) for c in levels], [t["by_level"][str(c)]["shares"]["E"] for c in levels], "s-",
            "E = F[sem] - F[drift]")
    ax[1].set_xticks([np.log2(c) for c in levels])
    ax[1].set_xticklabels([f"{c:g}x" for c in levels])
    ax[1].axhline(0, color="k", lw=0.8)
    ax[1].set_xlabel("consolidation")
    ax[1].set_ylabel("excess forgetting (share of watched facts)")
    ax[1].set_title("the quantity every share divides", fontsize=9)
    ax[1].legend(fontsize=7)
    fig.suptitle("Decomposition along the consolidation axis (a trend, deciding nothing)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out, stem)


def plot_hypothesis(v: dict, out: str | Path) -> list[Path]:
    """The figure of one hypothesis' verdict.json, next to it."""
    fn = {"localized": plot_localized, "capacity": plot_capacity, "decomposition": plot_decomposition,
          "behavior_cloning": plot_behavior_cloning, "culprits": plot_culprits,
          "aimed_replay": plot_aimed_replay, "bc_self": plot_bc_self}.get(v["hypothesis"])
    if v.get("design") == "count_sweep":
        fn = plot_capacity_sweep
    return fn(v, Path(out)) if fn is not None else []  # a module without a figure of its own


def plot_summary(verdicts: dict[str, dict], out: str | Path) -> list[Path]:
    """One page: each hypothesis' share with its CI, coloured by verdict, with the decision bands."""
    names = list(verdicts)
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.8 * len(names)))
    for i, n in enumerate(names):
        s = verdicts[n]["share"]
        val = s["value"] if s["value"] is not None else float("nan")
        lo = s["low"] if s["low"] is not None else val
        hi = s["high"] if s["high"] is not None else val
        c = VERDICT_COLORS.get(verdicts[n]["verdict"], "k")
        ax.errorbar([val], [i], xerr=[[max(0, val - lo)], [max(0, hi - val)]], fmt="o", color=c, capsize=4)
        ax.text(1.02, i, verdicts[n]["verdict"], va="center", color=c, transform=ax.get_yaxis_transform())
    ax.axvspan(0.5, 1.5, color="#1b7837", alpha=0.08)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(0.1, color="#c51b7d", lw=0.8, ls=":")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_xlim(-0.6, 1.3)
    ax.set_xlabel("share of SFT-induced forgetting accounted for (mean, 95% CI over seeds)")
    ax.set_title("Why does SFT make the model forget what it knew?", fontsize=10)
    return _save(fig, Path(out), "summary")
