"""Inside the model during fine-tuning: drift, overlap vs. forgetting, and which parameters forget.

Fine-tunes the base once per method with a ProbeCallback (or reuses finished runs), then writes
``probe_analysis.json`` and three figures into ``--out``:

- ``drift.png``: representation drift (1 - cosine to the base state) of held-out known facts at
  the subject's last token, middle layer, over steps, one line per method (the paper: ~5% under
  format learning, ~11% under SFT with overlapping new facts, held near 5% by self-distillation);
- ``overlap_vs_forgetting.png``: each held-out known fact's overlap with the new facts in the
  base model (``metrics.overlap.overlap_with_new``: centred max cosine to a new fact of the same
  relation, the definition the localized hypothesis decides on) vs. whether SFT made it forget,
  with Spearman rho and a bootstrap CI;
- ``attribution.png``: share of the forgetting undone by reverting each parameter group, per layer.

    python analyses/probe_analysis.py --out results/probes                    # default world
    python analyses/probe_analysis.py --quick --out /tmp/probes               # tiny world, ~1 min
    python analyses/probe_analysis.py --base-dir /tmp/base_default --out DIR  # a base trained elsewhere

Compute (``summarise``) and drawing (``plot_*``) are separate: the figures read only the JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a script from anywhere
    sys.path.insert(0, str(ROOT))

from interference.io import atomic_write_json  # noqa: E402
from interference.metrics.attribution import gradient_alignment, revert_attribution  # noqa: E402
from interference.metrics.forgetting import (forgetting_events, interference_signature, load_timeline,  # noqa: E402
                                             value_distribution)
from interference.metrics.overlap import drift, knn_overlap, overlap_with_new, probe_readout  # noqa: E402
from interference.metrics.stats import auroc, spearman_ci  # noqa: E402
from interference.probes import ProbeCallback, load_probes  # noqa: E402

POSITION = "subject_last"  # the paper tracks entity representations: the subject's last token


# ------------------------------------------------------------------ runs
def run_methods(out: Path, methods: Sequence[str], quick: bool = False, base_dir: str | None = None,
                probe_every: int | None = None, progress: bool = False, **overrides) -> dict[str, Path]:
    """Fine-tune once per method with probes on (finished runs with the same config are reused)."""
    from interference.train import FinetuneConfig, finetune

    runs = {}
    for m in methods:
        cfg = FinetuneConfig.quick(method=m) if quick else FinetuneConfig(method=m)
        cfg = dataclasses.replace(cfg, **({"base_dir": base_dir} if base_dir else {}), **overrides)
        every = probe_every or cfg.eval_every
        run_dir = out / "runs" / m
        finetune(cfg, run_dir, callbacks=[ProbeCallback(("stability", "plasticity"), every=every)], progress=progress)
        runs[m] = run_dir
    return runs


# ------------------------------------------------------------------ numbers from saved runs
def _sets(store) -> tuple[torch.Tensor, torch.Tensor]:
    sets = store.index["fact_sets"]
    stab = [f for f in store.fact_ids if sets[f] == "stability"]
    new = [f for f in store.fact_ids if sets[f] == "plasticity"]
    return store.rows(stab), store.rows(new)


def drift_curve(store, hook: str, position: str = POSITION) -> list[dict]:
    """Mean drift of the stability facts at every stored step (step 0 = base, drift 0)."""
    stab, _ = _sets(store)
    series = store.series(hook, position)[:, stab]  # [steps, n, d]
    d = drift(series, series[:1].expand_as(series))  # [steps, n]
    return [{"step": s, "drift": float(v)} for s, v in zip(store.steps, d.mean(-1))]


def overlap_vs_forgetting(store, timeline: list[dict], facts_by_id: dict, hooks: Sequence[str],
                          position: str = POSITION, k: int = 5, n_boot: int = 1000) -> dict:
    """Per layer: does a known fact's base-model overlap with the new facts predict its forgetting?

    Overlap = ``overlap_with_new`` at step 0 (the base model, before any update, centred on all
    held-out facts' mean as in the localized runner), so the predictor cannot be contaminated by
    the forgetting itself. Also the interference signature: do forgotten facts answer with the
    value of one of their k nearest new facts of the same relation?
    """
    events = forgetting_events(timeline, "stability")
    stab_rows, new_rows = _sets(store)
    stab_ids = [store.fact_ids[i] for i in stab_rows]
    keep = [i for i, f in enumerate(stab_ids) if f in events]  # known at step 0
    forgot = [events[stab_ids[i]].forgotten for i in keep]
    new_ids = [store.fact_ids[i] for i in new_rows]
    value_dist = value_distribution(facts_by_id.values())  # null: answers of every probed fact
    stab_rel = [facts_by_id[f].relation for f in stab_ids]
    new_rel = [facts_by_id[f].relation for f in new_ids]
    out: dict = {"n_known": len(keep), "n_forgotten": int(sum(forgot)), "layers": {}}
    for hook in hooks:
        base = store.get(store.steps[0], hook, position)
        o = overlap_with_new(base[stab_rows], stab_rel, base[new_rows], new_rel, k=k)
        ov, top = o.max[0][keep], o.neighbours[0][keep]
        rho = spearman_ci(ov, forgot, n_boot=n_boot)
        neighbours = {stab_ids[i]: [facts_by_id[new_ids[j]] for j in top[r] if j >= 0] for r, i in enumerate(keep)}
        e, n = base[stab_rows][keep], base[new_rows]
        known = {stab_ids[i]: events[stab_ids[i]] for i in keep}
        sig = interference_signature(known, facts_by_id, neighbours, value_dist)
        sig_wrong = interference_signature(known, facts_by_id, neighbours)  # null: the wrong answers given
        out["layers"][hook] = {
            "spearman": rho.to_dict(), "auroc": auroc(ov, forgot),
            "knn_share_mean": float(knn_overlap(e, n, k=k).mean()),
            "signature": {"rate": sig.rate, "chance": sig.chance, "chance_wrong_answers": sig_wrong.chance,
                          "hits": sig.hits, "n": sig.n},
            "points": {"overlap": [round(float(v), 4) for v in ov], "forgotten": forgot},
        }
    return out


def readout(store, timeline: list[dict], facts_by_id: dict, hooks: Sequence[str]) -> dict:
    """Per layer: is the right answer still linearly decodable at the last prompt token of the
    facts SFT made the model forget? A probe is fit on the final-step states of the known facts
    it kept and read on those it forgot (answer still there = the damage is in the read-out)."""
    events = forgetting_events(timeline, "stability")
    kept = [f for f, e in events.items() if not e.forgotten]
    lost = [f for f, e in events.items() if e.forgotten]
    if not lost or len({facts_by_id[f].answer for f in kept}) < 2 or "last" not in store.positions:
        return {"skipped": "needs forgotten facts, two answers among kept ones and the 'last' position"}
    out = {}
    for hook in hooks:
        final = store.get(store.steps[-1], hook, "last")
        r = probe_readout(final[store.rows(kept)], [facts_by_id[f].answer for f in kept],
                          final[store.rows(lost)], [facts_by_id[f].answer for f in lost])
        out[hook] = {"accuracy_on_forgotten": r.accuracy, "train_accuracy": r.train_accuracy, "n_forgotten": len(lost)}
    return out


def summarise(runs: dict[str, Path], attribution_method: str = "sft", n_align: int = 64) -> dict:
    """All numbers of the analysis, from finished runs only."""
    from interference.train import load_run, resolve_base

    summary: dict = {"methods": {}, "position": POSITION}
    for m, run_dir in runs.items():
        rec = load_run(run_dir)
        store = load_probes(run_dir)
        mid = store.hooks[len(store.hooks) // 2]
        summary["methods"][m] = {"drift_hook": mid, "drift": drift_curve(store, mid),
                                 "stability_accuracy": rec.metrics["stability_accuracy"],
                                 "plasticity_accuracy": rec.metrics["plasticity_accuracy"]}
    if attribution_method in runs:
        run_dir = runs[attribution_method]
        rec = load_run(run_dir)
        world, data = rec.world_and_data()
        base, _, tok, _, _ = resolve_base(rec.config, device="cpu")
        store = load_probes(run_dir, base_model=base)
        facts = {f.fact_id: f for f in data.eval_sets["stability"] + data.eval_sets["plasticity"]}
        timeline = load_timeline(run_dir)
        summary["overlap"] = overlap_vs_forgetting(store, timeline, facts, store.hooks)
        summary["readout"] = readout(store, timeline, facts, store.hooks)
        tuned, _, _ = rec.load_model(device="cpu")
        summary["attribution"] = revert_attribution(tuned, base, tok, data.eval_sets["stability"]).to_dict()
        ga = gradient_alignment(base, tok, data.eval_sets["plasticity"], data.eval_sets["stability"][:n_align])
        summary["gradient_alignment_base"] = {"mean": ga.mean_by_unit(), "conflict": ga.conflict_by_unit(),
                                              "n_known": len(ga.fact_ids)}
    return summary


# ------------------------------------------------------------------ figures (read the summary only)
def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=130, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


def plot_drift(summary: dict, out: Path) -> Path:
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for m, s in summary["methods"].items():
        ax.plot([p["step"] for p in s["drift"]], [p["drift"] for p in s["drift"]], marker="o", ms=3, label=m)
    hook = next(iter(summary["methods"].values()))["drift_hook"]
    ax.set(xlabel="step", ylabel="drift (1 - cos to base)", title=f"held-out known facts, {hook}")
    ax.legend(fontsize=8)
    return _save(fig, out / "drift.png")


def plot_overlap(summary: dict, out: Path) -> Path:
    import matplotlib.pyplot as plt
    layers = summary["overlap"]["layers"]
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3), squeeze=False, sharey=True)
    gen = torch.Generator().manual_seed(0)
    for ax, (hook, d) in zip(axes[0], layers.items()):
        x = torch.tensor(d["points"]["overlap"])
        y = torch.tensor(d["points"]["forgotten"], dtype=torch.float) + 0.08 * torch.randn(len(x), generator=gen)
        ax.scatter(x, y, s=6, alpha=0.4)
        r = d["spearman"]
        ax.set_title(f"{hook}\nrho {r['value']:.2f} [{r['low']:.2f}, {r['high']:.2f}]", fontsize=8)
        ax.set_xlabel("overlap with new facts (base, centred, same relation)")
    axes[0][0].set_yticks([0, 1], ["kept", "forgotten"])
    return _save(fig, out / "overlap_vs_forgetting.png")


def plot_attribution(summary: dict, out: Path) -> Path:
    import matplotlib.pyplot as plt
    share = summary["attribution"]["share"]
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(share)), 3))
    ax.bar(range(len(share)), [v if v == v else 0 for v in share.values()], color="#4477aa")
    ax.set_xticks(range(len(share)), list(share), rotation=45, ha="right", fontsize=8)
    ax.axhline(0, color="k", lw=0.6)
    ax.set(ylabel="share of forgetting undone", title=f"revert one group (forgetting {summary['attribution']['forgetting']:.2f})")
    return _save(fig, out / "attribution.png")


def probe_analysis(out: str | Path, methods: Sequence[str] = ("sft", "self_distill"), quick: bool = False,
                   base_dir: str | None = None, probe_every: int | None = None, progress: bool = False,
                   **overrides) -> dict:
    """Run (or reuse) the fine-tuning runs, then write probe_analysis.json and the figures."""
    import matplotlib
    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = run_methods(out, methods, quick, base_dir, probe_every, progress, **overrides)
    summary = summarise(runs, attribution_method=methods[0])
    atomic_write_json(out / "probe_analysis.json", summary)
    summary["figures"] = [str(p) for p in (plot_drift(summary, out), plot_overlap(summary, out),
                                           plot_attribution(summary, out))]
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--methods", nargs="+", default=["sft", "self_distill"], help="first one gets attribution")
    ap.add_argument("--quick", action="store_true", help="tiny world and model")
    ap.add_argument("--base-dir", help="a pre-training run directory to fine-tune from")
    ap.add_argument("--probe-every", type=int, help="steps between probe snapshots (default: eval_every)")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    s = probe_analysis(args.out, args.methods, args.quick, args.base_dir, args.probe_every, args.progress)
    for m, d in s["methods"].items():
        print(f"{m}: final drift {d['drift'][-1]['drift']:.3f}  stability {d['stability_accuracy']['final']:.3f}")
    if "overlap" in s:
        for hook, d in s["overlap"]["layers"].items():
            r, sig = d["spearman"], d["signature"]
            print(f"{hook}: rho {r['value']:.3f} [{r['low']:.3f}, {r['high']:.3f}]  "
                  f"signature {sig['rate']:.3f} vs chance {sig['chance']:.3f}")
    print("figures:", *s["figures"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
