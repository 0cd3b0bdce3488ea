"""Score the pre-registered forecast variants (docs/forecast_preregistration.md) on given seeds.

    python analyses/forecast_variants.py --seeds 5,6,7 --out analyses/results/forecast/dev_variants.json   # development
    python analyses/forecast_variants.py --seeds 0,1,2,3,4 --out analyses/results/forecast/variants.json   # held-out

Every variant is scored leave-one-seed-out on the seeds given (fit on the others, score the held-out
one), with the same runs and feature tables as ``interference.forecast.evaluate`` (reused from
``--runs``; missing runs are fine-tuned). All variants are reported, not only the best.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# name -> (feature groups left out, combiner, C); "logistic" is the shipped, JSON-round-tripping one
VARIANTS = {
    "v0_previous": (("lookahead",), "logistic", 0.01),
    "v1_lookahead": ((), "logistic", 0.01),
    "v2_lookahead_C0.1": ((), "logistic", 0.1),
    "v3_lookahead_hgb": ((), "hgb", None),
    "v4_lookahead_normal_scores": ((), "logistic_ns", 0.01),
    "v5_lookahead_alone": (("fragility", "competition", "pieces", "overlap", "gradient_alignment"), "logistic", 0.01),
}


def _fit_predict(kind: str, C: float | None, X: np.ndarray, y: np.ndarray, Z: np.ndarray) -> np.ndarray:
    if kind == "hgb":  # shallow, slow-learning, large leaves: ~4,500 facts, ~400 forgotten
        from sklearn.ensemble import HistGradientBoostingClassifier
        return HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05, max_iter=200, min_samples_leaf=50,
                                              l2_regularization=1.0, random_state=0).fit(X, y).predict_proba(Z)[:, 1]
    from interference.metrics.logistic import fit_logistic
    scaler, clf = fit_logistic(X, y, "normal" if kind == "logistic_ns" else "z", C=C, max_iter=3000)
    return clf.decision_function(scaler(Z))


def score_variants(tables, labels, seeds) -> dict:
    from interference.forecast.evaluate import feature_sets
    from interference.metrics.stats import estimate
    from interference.metrics.stats import auroc
    groups = feature_sets(tables[0].names)
    frag = [auroc(t.columns["neg_gold_logprob"], y) for t, y in zip(tables, labels)]

    def e(values):
        d = estimate(values)
        return {"mean": d["value"], "lo": d["low"], "hi": d["high"], "n": d["n"]}
    out = {"seeds": list(seeds), "fragility": {"auroc": e(frag), "per_seed": frag}, "variants": {}}
    for name, (drop, kind, C) in VARIANTS.items():
        names = [n for g, ns in groups.items() if g not in drop for n in ns]
        per = []
        for k in range(len(tables)):
            tr = [i for i in range(len(tables)) if i != k]
            X = np.concatenate([tables[i].matrix(names) for i in tr])
            y = np.concatenate([labels[i] for i in tr])
            per.append(auroc(_fit_predict(kind, C, X, y, tables[k].matrix(names)), labels[k]))
        out["variants"][name] = {"auroc": e(per), "minus_fragility": e([a - b for a, b in zip(per, frag)]),
                                 "per_seed": per, "n_features": len(names), "combiner": kind, "C": C}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", required=True, help="comma-separated SFT seeds, e.g. 0,1,2,3,4")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "forecast" / "default"))
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from interference.forecast.evaluate import EvalConfig, seed_tables
    from interference.io import atomic_write_json as write_json
    seeds = [int(s) for s in a.seeds.split(",")]
    cfg = EvalConfig(seeds=max(seeds) + 1, methods=("sft",))
    rows = [seed_tables(cfg, s, Path(a.runs))["sft"] for s in seeds]
    res = score_variants([t for t, _ in rows], [y for _, y in rows], seeds)
    res["n_facts"], res["n_forgotten"] = [len(y) for _, y in rows], [int(y.sum()) for _, y in rows]
    write_json(a.out, res)
    f = lambda d: f"{d['mean']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]"  # noqa: E731
    print(f"seeds {seeds}; fragility {f(res['fragility']['auroc'])}")
    for n, v in res["variants"].items():
        print(f"{n:28s} AUROC {f(v['auroc'])}  minus fragility {f(v['minus_fragility'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
