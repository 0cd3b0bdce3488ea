"""Everything the toolkit knows about one fact, in one object: ``fact_report(query, runs)``.

Why: the paper's claim is about *which* known facts break and *why*; a user who asks "what
happened to this fact?" should not have to join five files. The fact explorer notebook and any
script call the same function, so nothing lives only in a notebook.

    runs = {"sft": load_run("runs/figures/sft-s0-..."), "self_distill": load_run(...)}
    rep = fact_report("Balomir", runs)          # an entity name (first held-out fact) or a fact id
    print(rep.summary())

A report holds: the answer timeline under each method, the base's SliCK category, the nearest
new facts in representation space with their values (is the wrong answer one of theirs?), drift
per layer, which parameter group's revert restores the fact, a logit-lens view of the answer
across layers, and the forecast's risk for it when ``interference.forecast`` and its results exist,
next to what the SFT run did to it (``forecast_vs_outcome``: hit, miss, false alarm).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import torch

from interference.data import Fact
from interference.evaluate import normalize_answer

SET_ORDER = ("stability", "task", "plasticity")  # where a name lookup looks first: the watched facts
# A fact counts as "at risk" when the forecast ranks it in the top decile of the watched facts:
# forgetting is rare (a few % of known facts), so a calibrated P(forgotten) seldom passes 0.5 and
# the rank is the usable signal; the forecast figure reads the same deciles.
AT_RISK_PERCENTILE = 90.0


class FactNotFound(LookupError):
    """No fact matches the query; the message lists a few that exist."""


@dataclass
class FactReport:
    fact: Fact
    eval_set: str | None  # which evaluation set of the runs holds the fact (None: only trained on)
    slick: dict | None  # the base model's SliCK row (category, p_greedy, p_sample)
    timeline: dict[str, list[dict]]  # method -> [{step, correct, prediction, gold_logprob, outcome}]
    final: dict[str, dict]  # method -> {correct, prediction, forgotten}
    neighbours: list[dict]  # nearest new facts (same relation): fact_id, subject, answer, cosine
    wrong_from_neighbour: dict[str, str | None]  # method -> subject of the neighbour whose value it now answers
    drift: dict[str, list[float]]  # method -> per layer, 1 - cos(h_tuned, h_base) at the subject's last token
    restores: dict[str, list[str]]  # method -> parameter units whose revert alone restores the fact
    lens: dict[str, list[dict]]  # "base" / method -> per layer {gold_logprob, gold_rank, top, top_logprob}
    layer: int = 0  # the layer the neighbours are read at
    forecast: dict | None = None  # {"risk", "percentile", ...} or {"missing": why}
    forecast_check: dict | None = None  # the forecast next to what happened (``forecast_vs_outcome``)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))

    def summary(self) -> str:
        f = self.fact
        lines = [f"{f.fact_id}: {f.prompt} -> {f.answer}   (set {self.eval_set}, SliCK "
                 f"{(self.slick or {}).get('category', 'n/a')})"]
        for m, fin in self.final.items():
            src = self.wrong_from_neighbour.get(m)
            lines.append(f"  {m:<14} final {'right' if fin['correct'] else 'WRONG'}: {fin['prediction']!r}"
                         + (f"  <- the value of new fact {src!r}" if src else "")
                         + (f"; revert restores: {', '.join(self.restores[m]) or 'no single unit'}"
                            if fin.get("forgotten") else ""))
        near = ", ".join(f"{n['subject']} -> {n['answer']} ({n['cosine']:.2f})" for n in self.neighbours[:3])
        lines.append(f"  nearest new facts (layer {self.layer}): {near or 'none'}")
        if self.forecast and "risk" in self.forecast:
            drivers = ", ".join(f"{d.get('subject', d.get('fact_id'))} -> {d.get('value')}"
                                for d in (self.forecast.get("drivers") or [])[:3])
            lines.append(f"  forecast before training: risk {self.forecast['risk']:.3f} (percentile "
                         f"{self.forecast.get('percentile')})" + (f"; driven by {drivers}" if drivers else ""))
        elif self.forecast:
            lines.append(f"  forecast: {self.forecast.get('missing')}")
        if self.forecast_check and "forgotten" in self.forecast_check:
            lines.append(f"  forecast vs outcome: {self.forecast_check['text']}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


# ------------------------------------------------------------------ finding the fact
def find_fact(query: str, data, relation: str | None = None) -> tuple[Fact, str | None]:
    """(fact, eval set) by fact id, or by entity name (the first match in stability, task,
    plasticity, then the training facts; ``relation`` narrows a name)."""
    pools = [(s, data.eval_sets.get(s, [])) for s in SET_ORDER] + [(None, data.train)]
    for s, facts in pools:
        for f in facts:
            if f.fact_id == query:
                return f, s
    q = normalize_answer(query)
    for s, facts in pools:
        for f in facts:
            if normalize_answer(f.subject) == q and (relation is None or f.relation == relation):
                return f, s
    some = ", ".join(f"{f.subject!r} ({f.fact_id})" for f in data.eval_sets.get("stability", [])[:3])
    raise FactNotFound(f"no fact with id or entity name {query!r}{' and relation ' + relation if relation else ''} "
                       f"in these runs' SFT data; try e.g. {some}.")


# ------------------------------------------------------------------ the pieces
def answer_timeline(rows, fact_id: str) -> list[dict]:
    keep = ("step", "correct", "prediction", "gold_logprob", "outcome")
    return sorted(({k: r[k] for k in keep} for r in rows if r["fact_id"] == fact_id), key=lambda r: r["step"])


def nearest_new(base, tok, fact: Fact, new: list[Fact], watch: list[Fact], layer: int, k: int) -> list[dict]:
    """The ``k`` new facts of the fact's relation closest to it in the base: the overlap the
    verdicts use (``metrics.overlap.overlap_with_new``: subject-last states centred on the watched
    facts' mean, same relation only), with each neighbour's cosine."""
    from interference.metrics.overlap import cosine, overlap_with_new
    from interference.probes import capture
    same = [n for n in new if n.relation == fact.relation]
    if not same:
        return []
    hook = f"blocks.{layer}.hook_resid_post"
    watch = [w for w in watch if w.fact_id != fact.fact_id] + [fact]  # the fact is the last watched row
    hw = capture(base, tok, watch, [hook], "subject_last")[hook]
    hn = capture(base, tok, same, [hook], "subject_last")[hook]
    ov = overlap_with_new(hw, [w.relation for w in watch], hn, [n.relation for n in same], k=k)
    mu = hw.double().mean(0)
    out = []
    for j in ov.neighbours[0, -1]:
        if j >= 0:
            n = same[int(j)]
            c = float(cosine(hw[-1].double() - mu, hn[int(j)].double() - mu, dim=0))
            out.append({"fact_id": n.fact_id, "subject": n.subject, "relation": n.relation, "answer": n.answer,
                        "cosine": c})
    return out


def layer_drift(base, tuned, tok, fact: Fact) -> list[float]:
    """1 - cos between the fact's subject-last state in the tuned and base model, per layer."""
    from interference.metrics.overlap import drift
    from interference.probes import capture, resid_hooks
    hooks = resid_hooks(base)
    b, t = capture(base, tok, [fact], hooks, "subject_last"), capture(tuned, tok, [fact], hooks, "subject_last")
    return [float(drift(t[h], b[h])[0]) for h in hooks]


def forecast_risk(fact_id: str, run, forecast_dir: str | Path | None = None, method: str = "sft") -> dict:
    """The forecast's risk for this fact under ``method``: read from ``<forecast_dir>/at_risk_<method>.json``
    when the forecast CLI wrote it, else computed from the run's base model and SFT set (no
    fine-tuning). Needs ``interference.forecast``; without it, or when it cannot score this run,
    the answer is ``{"missing": why}``, never an exception."""
    try:
        from interference.forecast import forecast_for_fact, forecast_run
    except ImportError:
        return {"missing": "interference.forecast is not part of this installation"}
    try:
        if forecast_dir is not None and (Path(forecast_dir) / f"at_risk_{method}.json").exists():
            return forecast_for_fact(forecast_dir, fact_id, method)
        fc = forecast_run(run.out, methods=(method,))
        row = forecast_for_fact(fc[method], fact_id)
        return {k: v for k, v in row.items() if k != "features"}
    except (ValueError, RuntimeError, KeyError, OSError) as e:  # the forecast's own input errors are ValueErrors
        return {"missing": f"the forecast could not score this fact ({e})"}


def forecast_vs_outcome(row: dict | None, forgotten: bool | None, run_rate: float, n_known: int,
                        method: str = "sft") -> dict:
    """The forecast's call on one fact beside what the run did to it. ``row``: the fact's forecast
    (``risk``, ``percentile`` among the watched facts) or ``{"missing": why}``; ``forgotten``: right
    in the base and wrong at the end of the ``method`` run (None: the run does not evaluate it, or
    the base got it wrong, so it cannot be forgotten); ``run_rate``: the share of the run's
    ``n_known`` base-known watched facts it forgot, the rate a forecast has to beat."""
    if not row or "risk" not in row:
        return {"method": method, "missing": (row or {}).get("missing", "no forecast for this fact")}
    at_risk = float(row.get("percentile", 0.0)) >= AT_RISK_PERCENTILE
    out = {"method": method, "risk": float(row["risk"]), "percentile": row.get("percentile"), "at_risk": at_risk,
           "forgotten": forgotten, "run_forgetting_rate": run_rate, "n_known": n_known}
    if forgotten is None:
        out["outcome"] = "not scored: the base did not know it or the run does not evaluate it"
    else:
        out["outcome"] = {(True, True): "hit", (True, False): "false alarm", (False, True): "miss",
                          (False, False): "correct rejection"}[(at_risk, bool(forgotten))]
    rate = f"{run_rate:.3f} of {n_known}" if n_known else "n/a (no base-known watched facts)"
    out["text"] = (f"{method}: risk {out['risk']:.3f} (percentile {out['percentile']}, "
                   f"{'at risk' if at_risk else 'not at risk'}); "
                   f"{'forgotten' if forgotten else 'kept' if forgotten is not None else 'not scored'} -> "
                   f"{out['outcome']}; the run forgot {rate} known watched facts")
    return out


def _check_forecast(rep: "FactReport", runs: Mapping[str, object], method: str = "sft") -> dict:
    """``forecast_vs_outcome`` for the run of ``method`` among ``runs`` (the forecast is per method)."""
    from interference.metrics.forgetting import forgetting_events
    rec = next((r for r in runs.values() if r.config.method == method), None)
    if rec is None:
        return {"method": method, "missing": f"no {method} run among {sorted(runs)} to compare the forecast with"}
    events = forgetting_events(rec.timeline(), "stability")
    n = len(events)
    rate = sum(e.forgotten for e in events.values()) / n if n else float("nan")
    ev = events.get(rep.fact.fact_id)
    return forecast_vs_outcome(rep.forecast, ev.forgotten if ev is not None else None, rate, n, method)


# ------------------------------------------------------------------ the report
def fact_report(query: str, runs: Mapping[str, object], *, relation: str | None = None, k: int = 5,
                layer: int | None = None, forecast_dir: str | Path | None = None, forecast: bool = True,
                revert: bool = True) -> FactReport:
    """Everything about one fact across ``runs`` (method label -> RunRecord of the same base and
    SFT data). ``layer`` (default: middle) is where the nearest new facts are read; the forecast
    is that of the first run's SFT set (``forecast=False`` skips it)."""
    from interference.lens import logit_lens
    from interference.metrics.attribution import revert_attribution
    from interference.models import load_model
    from interference.pretrain import load_slick
    from interference.train import base_dir_of
    if not runs:
        raise ValueError("fact_report needs at least one run (method label -> RunRecord).")
    first = next(iter(runs.values()))
    _, data = first.world_and_data()
    fact, eval_set = find_fact(query, data, relation)
    base_dir = base_dir_of(first.config)
    base, _, tok = load_model(base_dir)
    base.eval()
    layer = int(base.cfg.n_layers) // 2 if layer is None else layer
    slick = load_slick(base_dir).get(fact.fact_id)
    neighbours = nearest_new(base, tok, fact, data.eval_sets["plasticity"], data.eval_sets["stability"], layer, k)
    rep = FactReport(fact, eval_set, slick, {}, {}, neighbours, {}, {}, {}, {"base": logit_lens(base, tok, [fact]).row()},
                     layer=layer, forecast=forecast_risk(fact.fact_id, first, forecast_dir) if forecast else None)
    values = {normalize_answer(n["answer"]): n["subject"] for n in neighbours}
    for label, rec in runs.items():
        tl = answer_timeline(rec.timeline(), fact.fact_id)
        rep.timeline[label] = tl
        tuned = rec.load_model()[0].eval()
        if tl:
            last = tl[-1]
            forgotten = bool(tl[0]["correct"]) and not last["correct"]
            rep.final[label] = {"correct": bool(last["correct"]), "prediction": last["prediction"], "forgotten": forgotten}
            wrong = normalize_answer(last["prediction"]) if not last["correct"] else None
            rep.wrong_from_neighbour[label] = values.get(wrong) if wrong else None
            if revert and forgotten:
                att = revert_attribution(tuned, base, tok, [fact], by_layer=True)
                rep.restores[label] = [u for u, ids in att.recovered.items() if fact.fact_id in ids]
        else:
            rep.notes.append(f"{label}: the fact is not evaluated in this run (it was a training fact).")
        rep.drift[label] = layer_drift(base, tuned, tok, fact)
        rep.lens[label] = logit_lens(tuned, tok, [fact]).row()
    if forecast:
        rep.forecast_check = _check_forecast(rep, runs)
    return rep


def forgotten_facts(rec, eval_set: str = "stability") -> list[str]:
    """Ids of the facts of ``eval_set`` a run got right at step 0 and wrong at the end: candidates to explore."""
    from interference.metrics.forgetting import forgetting_events
    return [fid for fid, e in forgetting_events(rec.timeline(), eval_set).items() if e.forgotten]


def explorer_runs(quick: bool = True, root: str | Path | None = None, labels=("sft", "self_distill"),
                  seed: int = 0) -> dict:
    """label -> RunRecord of the ``curves`` figure's arms (same configs, same cache as
    ``python -m interference.figures`` run at the repository root), so the notebook explores the
    runs the figures show; trains only what is missing."""
    from interference.figures.config import REPO, ArmsConfig, load_config
    from interference.figures.runs import RunCache
    cfg = load_config(ArmsConfig, "curves", quick)
    arms = {a.label: a for a in cfg.arms}
    missing = [l for l in labels if l not in arms]
    if missing:
        raise ValueError(f"no arm {missing[0]!r} in interference/figures/configs/curves.json; choose from {sorted(arms)}.")
    cache = RunCache(root or REPO / ("runs/figures_quick" if quick else "runs/figures"), quick)
    return {l: cache.get(arms[l], seed, cfg.run) for l in labels}
