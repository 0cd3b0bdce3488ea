"""Reading the saved results of other commands (hypothesis verdicts, the per-fact forecast).

These figures never recompute what those commands own (a hypothesis grid is minutes to an hour);
a missing file is a ``MissingInput`` whose message names the command that writes it. Readers are
lenient about *extra* keys, so a verdict that gains statistics still draws.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from interference.metrics.stats import format_estimate
from interference.figures.runs import MissingInput


HYP_COMMAND = "python -m interference.run_hypothesis {name}{quick} --out {out}"
# the forecast CLI reads the world (quick or default) from the run whose SFT set it is given
FORECAST_COMMAND = "python -m interference.forecast --sft-data RUN_DIR --evaluate --out {out}"


def _read(path: Path, command: str, note: str = "") -> dict:
    if not path.exists():
        raise MissingInput(f"no {path}; run `{command}` first{note}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise MissingInput(f"{path} is not valid JSON (an interrupted write?); re-run `{command}`{note}.") from None


def verdict(hyp_dir: str | Path, name: str, quick: bool = False) -> dict:
    """``<hyp_dir>/<name>/verdict.json``."""
    cmd = HYP_COMMAND.format(name=name, quick=" --quick" if quick else "", out=hyp_dir)
    return _read(Path(hyp_dir) / name / "verdict.json", cmd)


def is_estimate(e) -> bool:
    return isinstance(e, dict) and "value" in e and ("low" in e or "high" in e)


def primary(v: dict) -> dict:
    """The deciding statistic of a verdict: its pre-registered endpoint when it has one, else share."""
    for key in ("endpoint", "primary", "share"):
        if is_estimate(v.get(key)):
            return v[key]
    pre = v.get("preregistered") or {}
    name = pre.get("statistic") or pre.get("endpoint_key")
    if name and is_estimate((v.get("statistics") or {}).get(name)):
        return v["statistics"][name]
    return {"value": None, "low": None, "high": None, "n": 0}


def endpoint_text(v: dict) -> str:
    pre = v.get("preregistered") or {}
    return str(pre.get("endpoint") or v.get("share_definition") or "share of forgetting accounted for")


def hypotheses_summary(hyp_dir: str | Path, names, quick: bool = False) -> dict:
    """Verdict, deciding estimate, endpoint text and per-hypothesis predictions of each verdict found."""
    out, missing = {}, []
    for n in names:
        try:
            v = verdict(hyp_dir, n, quick)
        except MissingInput as e:
            missing.append(str(e))
            continue
        pre = v.get("preregistered") or {}
        out[n] = {"verdict": v.get("verdict", "inconclusive"), "estimate": primary(v), "endpoint": endpoint_text(v),
                  "predictions": pre.get("predictions", {}), "seeds": v.get("seeds"), "hash": pre.get("hash"),
                  "main_at": pre.get("main_at"), "negligible_below": pre.get("negligible_below")}
    if not out:
        raise MissingInput(missing[0] if len(missing) == 1 else
                           f"no hypothesis verdicts under {hyp_dir}; run `python -m interference.run_hypothesis all"
                           f"{' --quick' if quick else ''} --out {hyp_dir}` first.")
    return {"hypotheses": out, "missing": missing}


CAPACITY_ARMS = {"sft": "sft", "joint": "joint (rehearsal)", "drift": "drift (Known-only)"}


def capacity_series(hyp_dir: str | Path, quick: bool = False) -> dict:
    """Forgetting vs number of new facts per model size from the capacity verdict, as
    {size: {curve: [[n_new_facts, estimate], ...]}}, plus every other statistic with a CI.

    Two layouts: the pre-registered grid (``series.grid[level][size][count]`` with
    ``forgetting_sft|joint|drift``: curves per arm at the default consolidation level) and the
    earlier key-style sweep (``series.forgetting_by_count[size][uuid|semantic][count]``)."""
    v = verdict(hyp_dir, "capacity", quick)
    series = v.get("series") or {}
    per = series.get("facts_per_entity", 1)
    curves: dict = {}
    grid = series.get("grid") or {}
    level = grid.get("default") or next(iter(grid.values()), {})
    for size, counts in level.items():
        for arm, label in CAPACITY_ARMS.items():
            pts = sorted([int(c) * per, cell[f"forgetting_{arm}"]] for c, cell in counts.items()
                         if is_estimate(cell.get(f"forgetting_{arm}")))
            if pts:
                curves.setdefault(size, {})[label] = pts
    for size, styles in (series.get("forgetting_by_count") or {}).items():
        for style, counts in styles.items():
            if isinstance(counts, dict):
                curves.setdefault(size, {})[f"{style} keys"] = sorted(
                    [int(c) * per, e] for c, e in counts.items() if is_estimate(e))
    stats = {k: e for k, e in (v.get("statistics") or {}).items() if is_estimate(e)}
    headline = [(str(h[0]), h[1]) for h in v.get("headline", []) if len(h) == 2 and is_estimate(h[1])]
    return {"curves": curves, "statistics": dict(headline) or stats, "verdict": v.get("verdict"),
            "estimate": primary(v), "endpoint": endpoint_text(v), "seeds": v.get("seeds")}


# "<read>/<arm>/forget_targets" (pre-registered grid, equal-learning read) or the older
# "forgetting_<arm>_targets"; both name an arm and whether the number is for targets or the rest.
_TARGET_KEYS = (re.compile(r"^learned/(?P<arm>[\w]+)/forget_(?P<kind>targets|rest)$"),
                re.compile(r"^forgetting_(?P<arm>\w+?)_(?P<kind>targets|rest)$"))


def designed_intervention(hyp_dir: str | Path, quick: bool = False) -> dict:
    """Target vs non-target ("rest") forgetting per arm of the localized hypothesis' designed
    intervention: {"arms": [...], "targets": [estimate], "rest": [estimate], ...}."""
    v = verdict(hyp_dir, "localized", quick)
    st = {k: e for k, e in (v.get("statistics") or {}).items() if is_estimate(e)}
    found: dict[str, dict] = {}
    for rx in _TARGET_KEYS:
        for k, e in st.items():
            m = rx.match(k)
            if m:
                found.setdefault(m["arm"], {})[m["kind"]] = e
        if found:
            break  # the first (newer) key family wins
    arms = [a for a, d in found.items() if {"targets", "rest"} <= set(d)]
    if not arms:
        raise MissingInput(f"{hyp_dir}/localized/verdict.json has no target/rest forgetting statistics; re-run "
                           "`python -m interference.run_hypothesis localized` with this version.")
    return {"arms": arms, "targets": [found[a]["targets"] for a in arms], "rest": [found[a]["rest"] for a in arms],
            "verdict": v.get("verdict"), "estimate": primary(v), "seeds": v.get("seeds")}


# ------------------------------------------------------------------ forecast
def roc_curve(scores, labels) -> tuple[list[float], list[float]]:
    """(false-positive rates, true-positive rates) sweeping the threshold down through the scores
    (``sklearn.metrics.roc_curve``, every threshold kept); ties move together, so the curve's area
    equals the Mann-Whitney AUROC. Non-finite scores are dropped; one class only: the diagonal."""
    from sklearn.metrics import roc_curve as _roc
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    ok = np.isfinite(s)
    s, y = s[ok], y[ok]
    if y.all() or not y.any():
        return [0.0, 1.0], [0.0, 1.0]
    fpr, tpr, _ = _roc(y, s, drop_intermediate=False)
    return fpr.tolist(), tpr.tolist()


LABEL_KEYS = ("forgotten", "label", "y")


PER_FACT_FILE = "per_fact.jsonl"  # written beside forecast.json by forecast.evaluate


def _per_fact_file(path: Path, method: str | None) -> list[dict]:
    """Rows of ``per_fact.jsonl`` (one JSON object per line: method, seed, fact_id, forgotten, one
    score per predictor), those of ``method`` only when rows name their method; [] if absent."""
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise MissingInput(f"{path} line {n} is not JSON; re-run the forecast evaluation that wrote it.") from None
    return [r for r in rows if method is None or r.get("method", method) == method]


def _per_fact(fc: dict) -> list[dict]:
    for key in ("per_fact", "facts", "scores"):
        rows = fc.get(key)
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            return rows
    return []


def forecast(forecast_dir: str | Path, quick: bool = False) -> dict:
    """AUROC per predictor with its CI, ROC curves per predictor, and forgetting per risk decile.

    ``forecast.json`` (``python -m interference.forecast --evaluate``) holds ``auroc`` per
    predictor ({mean, lo, hi, n} over held-out seeds) and, per method, a ``calibration`` table
    (equal-count risk bins: predicted vs observed forgetting). ROC curves come from a ``roc``
    table ({predictor: {fpr, tpr}}) or from per-fact rows (fact_id, forgotten and one score per
    predictor: ``per_fact.jsonl`` beside it, else a ``per_fact`` list inside it), pooled over the
    held-out seeds; the risk deciles then come from the same rows."""
    path = Path(forecast_dir) / "forecast.json"
    cmd = FORECAST_COMMAND.format(out=forecast_dir)
    fc = _read(path, cmd, f" (RUN_DIR: a fine-tuning run, e.g. one under runs/figures{'_quick' if quick else ''})")
    au = fc.get("auroc") or {}
    if not au:
        raise MissingInput(f"{path} has no 'auroc' table; re-run `{cmd}`.")
    auroc = {p: {"value": e.get("mean", e.get("value")), "low": e.get("lo", e.get("low")),
                 "high": e.get("hi", e.get("high")), "n": e.get("n")} for p, e in au.items() if isinstance(e, dict)}
    methods = fc.get("methods") or {}
    method = next(iter(methods), None)
    first = methods.get(method, {})
    rocs = {}
    for p, r in (fc.get("roc") or first.get("roc") or {}).items():
        if isinstance(r, dict) and "fpr" in r and "tpr" in r:
            rocs[p] = {"fpr": list(r["fpr"]), "tpr": list(r["tpr"])}
    rows = _per_fact_file(path.parent / PER_FACT_FILE, method) or _per_fact(fc) or _per_fact(first)
    label = next((k for k in LABEL_KEYS if rows and k in rows[0]), None)
    deciles = [{"bin": k, "risk": c.get("predicted"), "forgotten": c.get("observed"), "n": c.get("n")}
               for k, c in enumerate(first.get("calibration") or [])]
    base_rate = ((first.get("table") or {}).get("base_rate") or {}).get("forecast", {}).get("mean")
    if rows and label:
        y = [bool(r[label]) for r in rows]
        base_rate = float(np.mean(y))
        for p in auroc:
            if p not in rocs and p in rows[0]:
                fpr, tpr = roc_curve([_num(r.get(p)) for r in rows], y)
                rocs[p] = {"fpr": fpr, "tpr": tpr}
        risk_key = "forecast" if "forecast" in rows[0] else next((p for p in auroc if p in rows[0]), None)
        if risk_key and not deciles:
            deciles = risk_deciles([_num(r.get(risk_key)) for r in rows], y)
    per_seed = {p: [r.get("auroc") for r in rows_] for p, rows_ in (first.get("per_seed") or {}).items()
                if p in auroc and isinstance(rows_, list) and all(isinstance(r, dict) for r in rows_)}
    n_facts = first.get("n_facts")
    return {"auroc": auroc, "roc": rocs, "per_seed_auroc": per_seed, "deciles": deciles, "base_rate": base_rate,
            "n_facts": sum(n_facts) if isinstance(n_facts, list) else (n_facts or len(rows)),
            "method": method or fc.get("method"), "seeds": (fc.get("config") or {}).get("seeds", fc.get("seeds")),
            "forecast_minus_fragility": fc.get("forecast_minus_fragility")}


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def risk_deciles(risk, forgotten, n_bins: int = 10) -> list[dict]:
    """Facts sorted by forecast risk into ``n_bins`` equal groups: mean risk and share forgotten."""
    r, y = np.asarray(risk, float), np.asarray(forgotten, bool)
    ok = np.isfinite(r)
    r, y = r[ok], y[ok]
    order = np.argsort(r, kind="mergesort")
    out = []
    for k, idx in enumerate(np.array_split(order, min(n_bins, max(1, r.size)))):
        if idx.size:
            out.append({"bin": k, "risk": float(r[idx].mean()), "forgotten": float(y[idx].mean()), "n": int(idx.size)})
    return out


# ------------------------------------------------------------------ one hypothesis, for the walkthrough
def load_hypothesis(name: str, hyp_dir: str | Path = "runs/hypotheses", quick: bool = False,
                    run_if_missing: bool = False, seeds: int | None = None) -> dict:
    """{"verdict", "per_seed", "plots"} of one hypothesis' saved results. With ``run_if_missing``
    a missing verdict is produced first, as the hypothesis CLI would (cells it finds are reused)."""
    path = Path(hyp_dir) / name / "verdict.json"
    if not path.exists() and run_if_missing:
        from interference.hypotheses.runner import run  # imports every design: only when one must run
        run(name, quick=quick, seeds=seeds, out=hyp_dir, progress=False)
    v = verdict(hyp_dir, name, quick)
    per_seed_file = Path(hyp_dir) / name / "per_seed.json"
    per_seed = json.loads(per_seed_file.read_text()) if per_seed_file.exists() else v.get("per_seed", [])
    plots = sorted(str(p) for p in (Path(hyp_dir) / name).glob("*.png"))
    return {"verdict": v, "per_seed": per_seed, "plots": plots}


def fmt(e) -> str:
    """``metrics.stats.format_estimate`` without a stand-in for a missing interval."""
    return format_estimate(e, missing_ci="")


def describe_verdict(v: dict) -> str:
    """What was pre-registered, what came out, and every statistic with its CI, as text."""
    pre = v.get("preregistered") or {}
    lines = [f"hypothesis: {v.get('hypothesis')}", f"question: {v.get('question', '')}".rstrip(),
             f"endpoint (pre-registered): {endpoint_text(v)}"]
    for h, p in (pre.get("predictions") or {}).items():
        lines.append(f"  if {h} were the driver: {p}")
    lines += [f"rule: {pre.get('rule') or v.get('rule', '')}",
              f"verdict: {v.get('verdict')}  endpoint {fmt(primary(v))}  ({v.get('seeds')} seeds)", "statistics:"]
    lines += [f"  {k:<44} {fmt(e)}" for k, e in (v.get("statistics") or {}).items() if is_estimate(e)]
    return "\n".join(l for l in lines if l)
