"""Score the forecast against real forgetting: fine-tune per seed, fit on some seeds, score on others.

Pre-registered before the first evaluation run (kept as written):

- **Target.** A watched fact is *forgotten* when the base answered it right (step 0 of the run's
  timeline) and it is wrong at the end of SFT (``metrics.forgetting.forgetting_events``,
  ``ForgettingEvent.forgotten``). Watched facts = the run's ``stability`` set (held-out
  HighlyKnown facts, never trained on); facts the base got wrong are left out.
- **Setting.** Default world, ``FinetuneConfig`` defaults (SFT at 50% Unknown, 400 facts, 40
  epochs, lr 3e-4), seeds 0-4; seed s sets both the SFT data draw and the model-side seed.
- **Scoring.** Leave-one-seed-out: the combiner is fitted on four seeds' facts and scores the
  fifth's; AUROC, average precision and precision among the top 5% per held-out seed; mean and
  95% t-interval over the 5 seeds (``metrics.stats.estimate``).
- **Decision rule.** The forecast meets the goal if its mean AUROC >= 0.9 *and* the per-seed
  difference forecast - fragility has mean >= 0.05 with a 95% interval above 0. Fragility = the
  fact's own base gold log-prob (negated), unfitted. Both are reported whatever they are.
- **Baselines in the same table.** ``fragility`` (raw), ``overlap`` (the overlap columns alone,
  same LOSO logistic regression), ``gradient_alignment`` (its columns alone, same fit),
  ``random`` (uniform scores, seeded).
- **Held-out world.** The combiner fitted on all default-world seeds scores a world with another
  seed, 6 relations and 60 values, unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

import interference.forecast.combine as C
from interference.forecast.predict import FeatureTable, GROUP_PREFIXES, compute_features, group_of
from interference.forecast.runs import forgotten_labels, run_config
from interference.io import atomic_write_json, config_hash

PREDICTORS = ("forecast", "fragility", "overlap", "gradient_alignment", "random")
EXTRA_PREDICTORS = ("fragility_combined", "competition", "pieces")
GROUP_PREDICTORS = {"overlap": "overlap", "gradient_alignment": "gradient_alignment",
                    "fragility_combined": "fragility", "competition": "competition", "pieces": "pieces"}


@dataclass
class EvalConfig:
    seeds: int = 5
    methods: tuple[str, ...] = ("sft",)
    quick: bool = False
    base_dir: str | None = None  # a pre-training run; default: the cached default (or quick) base
    data: dict = field(default_factory=dict)  # SFTDataConfig overrides (seed is set per run)
    top: float = 0.05  # "precision at the top 5%"
    C: float = C.C_DEFAULT
    interactions: bool = False  # fragility x feature products: no gain on the default world
    exclude_groups: tuple[str, ...] = ()  # feature groups the combined forecast leaves out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["methods"] = list(self.methods)
        d["exclude_groups"] = list(self.exclude_groups)
        return d

    def forecast_features(self, names: Sequence[str]) -> list[str]:
        """The columns the combined forecast uses: every feature of a group not excluded."""
        return [n for n in names if group_of(n) not in self.exclude_groups]


def _data_cfg(cfg: EvalConfig):
    from interference.sft_data import SFTDataConfig
    base = SFTDataConfig.quick() if cfg.quick else SFTDataConfig()
    return SFTDataConfig(**{**base.to_dict(), **cfg.data})


def teacher_for(method_cfg, model, tok, world, data, base_dir):
    """The self-distillation run's own format teacher: the same recipe, facts and base fingerprint
    as ``train.finetune`` hands to ``teacher.format_teacher``, so the cache beside the base returns
    the very weights the run was distilled from (built once, shared)."""
    import dataclasses
    from interference.methods import get_method
    from interference.bases import base_fingerprint
    from interference.teacher import format_teacher
    method = get_method(method_cfg.method, **method_cfg.method_options)
    recipe = dataclasses.replace(method_cfg.teacher_recipe(), epochs=method.stages()["teacher"])
    return format_teacher(model, tok, data.format_facts, recipe, base_dir, base_fingerprint(base_dir))


def seed_tables(cfg: EvalConfig, seed: int, root: Path, progress: bool = False,
                device=None) -> dict[str, tuple[FeatureTable, np.ndarray]]:
    """{method: (features, forgotten labels)} for one seed: fine-tunes each method (reused when the
    run exists) and computes the a-priori features from the base and the SFT set (cached)."""
    from interference.models import load_model
    from interference.bases import load_slick
    from interference.runs import RunStore
    from interference.train import base_dir_of

    out = {}
    cfgs = {m: run_config(m, seed, base_dir=cfg.base_dir, quick=cfg.quick, data=_data_cfg(cfg)) for m in cfg.methods}
    store = RunStore(root, progress=progress, device=device)
    recs = {m: store.get(c) for m, c in cfgs.items()}
    key = {"runs": {m: c.to_dict() for m, c in cfgs.items()}, "version": 3}  # bump when a feature changes (3: lookahead)
    cache = root / "features" / f"seed{seed}-{config_hash(key)}.json"
    if cache.exists():
        tables = {m: FeatureTable.from_dict(d) for m, d in json.loads(cache.read_text()).items()}
    else:
        rec = next(iter(recs.values()))
        world, data = rec.world_and_data()
        bd = base_dir_of(rec.config)
        model, _, tok = load_model(bd, device=device)
        watch = list(data.eval_sets["stability"])
        teachers = {m: teacher_for(cfgs[m], model, tok, world, data, bd) for m in cfg.methods if m == "self_distill"}
        tables = compute_features(model, tok, watch, data.train, set(data.unknown_ids), load_slick(bd),
                                  methods=cfg.methods, method_options={m: c.method_options for m, c in cfgs.items()},
                                  teachers=teachers)
        atomic_write_json(cache, {m: t.to_dict() for m, t in tables.items()})
    for m, t in tables.items():
        lab = forgotten_labels(recs[m].out)
        keep = [i for i, f in enumerate(t.fact_ids) if f in lab]
        sub = FeatureTable([t.fact_ids[i] for i in keep], {k: v[keep] for k, v in t.columns.items()},
                           [t.drivers[i] for i in keep] if t.drivers else [], m)
        out[m] = (sub, np.array([lab[f] for f in sub.fact_ids], bool))
    return out


def feature_sets(names: Sequence[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {g: [] for g in GROUP_PREFIXES}
    for n in names:
        groups[group_of(n)].append(n)
    return groups


def predictor_scores(tables: Sequence[FeatureTable], labels: Sequence[np.ndarray], cfg: EvalConfig,
                     seed_offset: int = 0) -> dict[str, list[np.ndarray]]:
    """{predictor: [scores of held-out seed k]} with leave-one-seed-out fits."""
    cols = [t.columns for t in tables]
    names = tables[0].names
    groups = feature_sets(names)
    out = {"forecast": C.leave_one_seed_out(cols, labels, cfg.forecast_features(names), cfg.interactions, cfg.C),
           "fragility": [c["neg_gold_logprob"] for c in cols],
           "random": [np.random.default_rng(1000 + seed_offset + k).random(len(t.fact_ids)) for k, t in enumerate(tables)]}
    for pred, group in GROUP_PREDICTORS.items():
        if groups[group]:
            out[pred] = C.leave_one_seed_out(cols, labels, groups[group], False, cfg.C)
    return out


def summarise(scores: dict[str, list[np.ndarray]], labels: Sequence[np.ndarray], top: float) -> dict:
    from interference.metrics.stats import estimate
    per_seed = {p: [C.scores(s, y, top) for s, y in zip(ss, labels)] for p, ss in scores.items()}

    def est(values):
        e = estimate(values)
        return {"mean": e["value"], "lo": e["low"], "hi": e["high"], "n": e["n"]}
    table = {metric: {p: est([r[metric] for r in rows]) for p, rows in per_seed.items()}
             for metric in ("auroc", "average_precision", "precision_at_top", "base_rate")}
    diff = [a["auroc"] - b["auroc"] for a, b in zip(per_seed["forecast"], per_seed["fragility"])]
    return {"table": table, "per_seed": per_seed, "forecast_minus_fragility": est(diff)}


def single_feature_auroc(tables: Sequence[FeatureTable], labels: Sequence[np.ndarray]) -> dict[str, float]:
    """Each column alone (larger = more at risk), mean AUROC over seeds: which feature carries what."""
    from interference.metrics.stats import auroc
    out = {}
    for n in tables[0].names:
        v = np.array([auroc(t.columns[n], y) for t, y in zip(tables, labels)], float)
        out[n] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
    return out


def evaluate(cfg: EvalConfig, root: str | Path, out: str | Path, progress: bool = False,
             heldout: dict | None = None, device=None) -> dict:
    """Run the evaluation and write ``out/forecast.json`` (+ ``per_fact.jsonl``, calibration.png,
    combiner.json). ``heldout``: {"base_dir": ..., "seeds": n} to score the default-world combiner
    on another world."""
    root, out = Path(root), Path(out)
    per = [seed_tables(cfg, s, root, progress, device) for s in range(cfg.seeds)]
    result = {"config": cfg.to_dict(), "target": "forgotten = base right, wrong at the end of SFT (stability set)",
              "methods": {}}
    fact_rows = []
    for m in cfg.methods:
        tables, labels = [p[m][0] for p in per], [p[m][1] for p in per]
        scores = predictor_scores(tables, labels, cfg)
        fact_rows += per_fact_rows(m, tables, labels, scores)
        s = summarise(scores, labels, cfg.top)
        pooled_p = np.concatenate(scores["forecast"])
        pooled_y = np.concatenate(labels)
        ok = np.isfinite(pooled_p)
        s.update({"calibration": C.calibration(pooled_p[ok], pooled_y[ok]), "n_facts": [len(y) for y in labels],
                  "n_forgotten": [int(y.sum()) for y in labels], "single_feature_auroc": single_feature_auroc(tables, labels)})
        try:
            comb = C.fit_all([t.columns for t in tables], labels, cfg.forecast_features(tables[0].names), cfg.interactions, cfg.C,
                             fitted_on={"method": m, "seeds": cfg.seeds, "quick": cfg.quick, "base_dir": cfg.base_dir})
            s["weights"] = dict(list(comb.weights().items())[:15])
            comb.save(out / f"combiner_{m}.json")
        except C.CombinerError as e:  # no forgetting at all in these runs: nothing to fit
            s["weights"] = f"not fitted: {e}"
        result["methods"][m] = s
        if m == cfg.methods[0]:
            plot_calibration(s["calibration"], out / "calibration.png", m)
    if len(cfg.methods) > 1:
        result["cross_method"] = cross_method(per, cfg)
    if heldout:
        result["heldout_world"] = score_heldout(C.Combiner.load(out / f"combiner_{cfg.methods[0]}.json"), heldout, cfg,
                                                root / "heldout", progress)
    first = result["methods"][cfg.methods[0]]
    result["auroc"] = {p: first["table"]["auroc"][p] for p in PREDICTORS}
    result["auroc_extra"] = {p: first["table"]["auroc"][p] for p in EXTRA_PREDICTORS if p in first["table"]["auroc"]}
    result["forecast_minus_fragility"] = first["forecast_minus_fragility"]
    result["goal_met"] = bool(result["auroc"]["forecast"]["mean"] >= 0.9 and first["forecast_minus_fragility"]["mean"] >= 0.05
                              and first["forecast_minus_fragility"]["lo"] > 0)
    from interference.io import atomic_write_json as write_json
    from interference.io import atomic_write_text
    atomic_write_text(out / "per_fact.jsonl", "".join(json.dumps(r) + "\n" for r in fact_rows))
    write_json(out / "forecast.json", result)
    return result


def per_fact_rows(method: str, tables: Sequence[FeatureTable], labels: Sequence[np.ndarray],
                  scores: dict[str, list[np.ndarray]]) -> list[dict]:
    """One row per (held-out seed, watched fact): its id, whether it was forgotten, and every
    predictor's score on that seed (the forecast's from the combiner fitted on the other seeds), so
    ROC curves and risk deciles can be drawn later without training anything. Seed k is the k-th
    evaluation seed (``FinetuneConfig.seed`` = k)."""
    rows = []
    for k, (t, y) in enumerate(zip(tables, labels)):
        for i, fid in enumerate(t.fact_ids):
            r = {"method": method, "seed": k, "fact_id": fid, "forgotten": bool(y[i])}
            for p, ss in scores.items():
                v = float(ss[k][i])
                r[p] = v if math.isfinite(v) else None
            rows.append(r)
    return rows


def cross_method(per: list[dict], cfg: EvalConfig) -> dict:
    """Does each method's own forecast beat another method's forecast on its forgetting? If so,
    the per-method forecast carries what is specific to the method. AUROC means over seeds."""
    from interference.metrics.stats import auroc
    out = {}
    for target in cfg.methods:
        labels = [p[target][1] for p in per]
        for source in cfg.methods:
            tables = [p[source][0] for p in per]
            fact_sets = [set(p[target][0].fact_ids) for p in per]
            sub = []
            for t, fs in zip(tables, fact_sets):
                keep = [i for i, f in enumerate(t.fact_ids) if f in fs]
                sub.append(FeatureTable([t.fact_ids[i] for i in keep], {k: v[keep] for k, v in t.columns.items()}))
            ys = [np.array([dict(zip(p[target][0].fact_ids, p[target][1]))[f] for f in t.fact_ids]) for t, p in zip(sub, per)]
            src_labels = [np.array([dict(zip(p[source][0].fact_ids, p[source][1])).get(f, False) for f in t.fact_ids])
                          for t, p in zip(sub, per)]
            sc = C.leave_one_seed_out([t.columns for t in sub], src_labels, sub[0].names, cfg.interactions, cfg.C)
            out[f"{source}_forecast_on_{target}"] = float(np.nanmean([auroc(s, y) for s, y in zip(sc, ys)]))
    return out


def score_heldout(comb: C.Combiner, heldout: dict, cfg: EvalConfig, root: Path, progress: bool) -> dict:
    hcfg = dataclasses.replace(cfg, base_dir=heldout["base_dir"], seeds=int(heldout.get("seeds", 1)), methods=(cfg.methods[0],),
                               data=heldout.get("data", cfg.data))
    rows = [seed_tables(hcfg, s, root, progress)[cfg.methods[0]] for s in range(hcfg.seeds)]
    scores = {"forecast": [comb.predict(t.columns) for t, _ in rows], "fragility": [t.columns["neg_gold_logprob"] for t, _ in rows],
              "random": [np.random.default_rng(2000 + k).random(len(t.fact_ids)) for k, (t, _) in enumerate(rows)]}
    s = summarise(scores, [y for _, y in rows], cfg.top)
    return {"base_dir": heldout["base_dir"], "seeds": hcfg.seeds, "auroc": s["table"]["auroc"],
            "average_precision": s["table"]["average_precision"], "precision_at_top": s["table"]["precision_at_top"],
            "n_facts": [len(y) for _, y in rows], "n_forgotten": [int(y.sum()) for _, y in rows]}


def plot_calibration(cal: list[dict], path: Path, method: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 4))
    p = [c["predicted"] for c in cal]
    o = [c["observed"] for c in cal]
    hi = max(p + o + [0.05]) * 1.05
    ax.plot([0, hi], [0, hi], color="grey", lw=1, ls="--", label="perfect")
    ax.plot(p, o, marker="o", label=f"forecast ({method})")
    ax.set_xlabel("predicted P(forgotten), held-out seed")
    ax.set_ylabel("observed share forgotten")
    ax.set_title("Forecast calibration (equal-count bins)")
    ax.legend(frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
