"""What the mechanism figures need: the parameter-space plane, overlap vs forgetting and drift,
and revert attribution, computed from cached runs (their weights, probe and parameter snapshots).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from interference.hooks import resid_post
from interference.figures.compute_training import estimate
from interference.figures.config import ArmsConfig, LocalizedFigureConfig, ParamSpaceConfig
from interference.figures.runs import MissingInput, load_param_path

EVAL_SETS = ("stability", "task", "plasticity")


def load_base(rec):
    """(model, tokenizer) of the base a run started from."""
    from interference.models import load_model
    from interference.train import base_dir_of
    model, _, tok = load_model(base_dir_of(rec.config))
    model.eval()
    return model, tok


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().float() for p in model.parameters()])


def plane_basis(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal (u, v) spanning the updates a and b (Gram-Schmidt, in float64): u along a."""
    a, b = a.double(), b.double()
    u = a / a.norm()
    w = b - (b @ u) * u
    if float(w.norm()) <= 1e-12 * float(b.norm()):
        raise ValueError("the two end points are collinear with the base; the plane is not defined.")
    return u, w / w.norm()


def project(deltas: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plane coordinates (a, b) of updates [T, P] and the share of each update's norm off the plane."""
    d = deltas.double()
    a, b = d @ u, d @ v
    resid = d - a[:, None] * u[None] - b[:, None] * v[None]
    norm = d.norm(dim=1)
    off = torch.where(norm > 0, resid.norm(dim=1) / norm.clamp_min(1e-30), torch.zeros_like(norm))
    return a.numpy(), b.numpy(), off.numpy()


def _score(model, tok, facts) -> tuple[float, float]:
    from interference.evaluate import score_facts
    res = score_facts(model, tok, facts)
    return (sum(r.correct for r in res) / len(res), float(np.mean([r.gold_logprob for r in res]))) if res \
        else (math.nan, math.nan)


def param_space(cfg: ParamSpaceConfig, ctx) -> dict:
    """Accuracy of the three sets on a grid in the plane through the base and two end points,
    with both training paths projected onto it."""
    recs = [ctx.cache.get(arm, cfg.seed, cfg.run) for arm in cfg.arms]
    base, tok = load_base(recs[0])
    theta0 = flat(base)
    ends = [flat(r.load_model()[0]) - theta0 for r in recs]
    u, v = plane_basis(*ends)
    _, data = recs[0].world_and_data()
    sets = {"stability": data.eval_sets["stability"][: cfg.n_facts], "task": data.eval_sets["task"],
            "plasticity": data.eval_sets["plasticity"]}
    paths, end_xy = {}, {}
    for arm, rec, end in zip(cfg.arms, recs, ends):
        steps, deltas = load_param_path(rec.out)
        a, b, off = project(deltas, u, v)
        paths[arm.label] = {"steps": steps, "a": a.tolist(), "b": b.tolist(), "off_plane": off.tolist()}
        ea, eb, _ = project(end[None], u, v)
        end_xy[arm.label] = [float(ea[0]), float(eb[0])]
    xs = [0.0] + [p for path in paths.values() for p in path["a"]] + [e[0] for e in end_xy.values()]
    ys = [0.0] + [p for path in paths.values() for p in path["b"]] + [e[1] for e in end_xy.values()]
    span = max(max(xs) - min(xs), max(ys) - min(ys))
    ga = np.linspace(min(xs) - cfg.margin * span, max(xs) + cfg.margin * span, cfg.grid)
    gb = np.linspace(min(ys) - cfg.margin * span, max(ys) + cfg.margin * span, cfg.grid)
    acc = {s: np.zeros((cfg.grid, cfg.grid)) for s in sets}
    logp = {s: np.zeros((cfg.grid, cfg.grid)) for s in sets}
    params = list(base.parameters())
    u32, v32 = u.float(), v.float()
    with torch.no_grad():
        for j, y in enumerate(gb):
            for i, x in enumerate(ga):
                torch.nn.utils.vector_to_parameters(theta0 + float(x) * u32 + float(y) * v32, params)
                for s, facts in sets.items():
                    acc[s][j, i], logp[s][j, i] = _score(base, tok, facts)
        torch.nn.utils.vector_to_parameters(theta0, params)
    return {"a": ga.tolist(), "b": gb.tolist(), "accuracy": {s: m.tolist() for s, m in acc.items()},
            "gold_logprob": {s: m.tolist() for s, m in logp.items()}, "paths": paths, "ends": end_xy,
            "threshold": cfg.threshold, "n_facts": {s: len(f) for s, f in sets.items()},
            "update_norm": {arm.label: float(e.norm()) for arm, e in zip(cfg.arms, ends)},
            "cos_updates": float(torch.nn.functional.cosine_similarity(ends[0].double(), ends[1].double(), dim=0)),
            "seed": cfg.seed, "order": [a.label for a in cfg.arms]}


# ------------------------------------------------------------------ localized interference
def drift_curve(store, hook: str, rows: torch.Tensor) -> tuple[list[int], list[float]]:
    """Mean representation drift (1 - cos to step 0) of ``rows`` at every stored step."""
    from interference.metrics.overlap import drift
    series = store.series(hook, "subject_last")[:, rows]
    return store.steps, drift(series, series[:1].expand_as(series)).mean(-1).tolist()


def overlap_and_fate(rec, hook: str) -> dict:
    """Per held-out known fact of one run: base overlap with the new facts (max cosine, same
    relation), its base gold log-prob (fragility) and whether it was forgotten."""
    from interference.metrics.forgetting import forgetting_events
    from interference.metrics.overlap import overlap_with_new  # the definition the verdicts use
    from interference.probes import load_probes
    store = load_probes(rec.out)
    _, data = rec.world_and_data()
    stab = [f for f in data.eval_sets["stability"] if f.fact_id in set(store.fact_ids)]
    new = [f for f in data.eval_sets["plasticity"] if f.fact_id in set(store.fact_ids)]
    h0 = store.get(store.steps[0], hook, "subject_last")
    ov = overlap_with_new(h0[store.rows([f.fact_id for f in stab])], [f.relation for f in stab],
                          h0[store.rows([f.fact_id for f in new])], [f.relation for f in new]).max
    tl = rec.timeline()
    events = forgetting_events(tl, "stability")
    base_lp = {r["fact_id"]: r["gold_logprob"] for r in tl if r["step"] == 0 and r["set"] == "stability"}
    keep = [i for i, f in enumerate(stab) if f.fact_id in events]
    return {"overlap": [float(ov[0, i]) for i in keep],
            "forgotten": [bool(events[stab[i].fact_id].forgotten) for i in keep],
            "base_logprob": [base_lp.get(stab[i].fact_id) for i in keep]}


def _binned(per_seed: list[dict], bins: int) -> list[dict]:
    """Forgetting rate per overlap quantile bin (quantiles per seed), estimated over seeds."""
    rates = [[] for _ in range(bins)]
    centers = [[] for _ in range(bins)]
    for d in per_seed:
        ov, fg = np.asarray(d["overlap"], float), np.asarray(d["forgotten"], bool)
        ok = np.isfinite(ov)
        ov, fg = ov[ok], fg[ok]
        if ov.size < bins:
            continue
        edges = np.quantile(ov, np.linspace(0, 1, bins + 1))
        idx = np.clip(np.searchsorted(edges, ov, side="right") - 1, 0, bins - 1)
        for k in range(bins):
            if (idx == k).any():
                rates[k].append(float(fg[idx == k].mean()))
                centers[k].append(float(ov[idx == k].mean()))
    return [{"overlap": float(np.mean(c)) if c else None, "forgetting": estimate(r)} for c, r in zip(centers, rates)]


def localized(cfg: LocalizedFigureConfig, ctx) -> dict:
    """Overlap vs forgetting (first arm), drift over training per arm, and, when the localized
    hypothesis has run, its designed-intervention numbers (targets vs the rest)."""
    from interference.metrics.stats import auroc
    from interference.probes import load_probes
    out: dict = {"drift": {}, "seeds": cfg.seeds, "order": [a.label for a in cfg.arms]}
    for k, arm in enumerate(cfg.arms):
        recs = ctx.cache.seeds(arm, cfg.seeds, cfg.run)
        n_layers = int(recs[0].config.base["model"]["n_layers"])
        layer = cfg.layer if cfg.layer is not None else n_layers // 2
        hook = resid_post(layer)
        curves = []
        for rec in recs:
            store = load_probes(rec.out)
            stab_ids = [f for f in store.fact_ids if store.index["fact_sets"][f] == "stability"]
            curves.append(dict(zip(*drift_curve(store, hook, store.rows(stab_ids)))))
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        out["drift"][arm.label] = {"method": arm.method, "steps": steps,
                                   "drift": [estimate([c[s] for c in curves]) for s in steps]}
        if k == 0:
            per_seed = [overlap_and_fate(rec, hook) for rec in recs]
            out["overlap"] = {"arm": arm.label, "layer": layer, "bins": _binned(per_seed, cfg.bins),
                              "auroc_overlap": estimate([auroc(d["overlap"], d["forgotten"]) for d in per_seed]),
                              "auroc_fragility": estimate([auroc([-x for x in d["base_logprob"]], d["forgotten"])
                                                           for d in per_seed]),
                              "forgetting": estimate([float(np.mean(d["forgotten"])) for d in per_seed])}
    out["layer"] = layer
    return refresh_localized(cfg, ctx, out)


def refresh_localized(cfg: LocalizedFigureConfig, ctx, data: dict) -> dict:
    """(Re)read the designed-intervention panel from the localized verdict: it belongs to another
    command, so even cached figure data takes the verdict as it is now."""
    from interference.figures.inputs import designed_intervention
    try:
        data["designed"] = designed_intervention(ctx.path(cfg.hypotheses_dir), ctx.quick)
    except MissingInput as e:
        data["designed"] = {"missing": str(e)}
    return data


# ------------------------------------------------------------------ attribution
def attribution(cfg: ArmsConfig, ctx) -> dict:
    """Share of forgetting undone by reverting each parameter group of each layer to the base."""
    from interference.metrics.attribution import revert_attribution
    out = {}
    for arm in cfg.arms:
        shares, forgetting = {}, []
        for rec in ctx.cache.seeds(arm, cfg.seeds, cfg.run):
            base, tok = load_base(rec)
            tuned = rec.load_model()[0].eval()
            _, data = rec.world_and_data()
            facts = data.eval_sets["stability"][: cfg.n_facts] if cfg.n_facts else data.eval_sets["stability"]
            att = revert_attribution(tuned, base, tok, facts, by_layer=True)
            forgetting.append(att.forgetting)
            for unit, s in att.share.items():
                shares.setdefault(unit, []).append(s)
        out[arm.label] = {"method": arm.method, "forgetting": estimate(forgetting),
                          "share": {u: estimate(v) for u, v in shares.items()}}
    return {"arms": out, "order": [a.label for a in cfg.arms], "seeds": cfg.seeds}
