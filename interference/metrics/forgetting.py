"""Per-fact forgetting from a run's timeline, and the interference signature of the wrong answers.

Why per fact: the claim under test is about *which* known facts are lost and *what* they turn
into. A forgetting event (the first evaluation at which a fact the base knew comes out wrong)
can be lined up against that fact's overlap with the new facts; the interference signature asks
whether the wrong answer is the value of an overlapping new fact (same relation), which is
what localized interference predicts and generic damage does not.

Input rows follow the timeline contract (docs/CONTRACTS.md):
``{"step", "fact_id", "set", "outcome", "correct", "gold_logprob", "prediction"}``.

``forgetting_rate`` is the one definition of the forgetting rate in the project (metrics,
hypotheses, analyses and the notebook call it): it compares two ``records.FactOutcomes`` fact by
fact and refuses records that do not hold the same facts in the same order.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from interference.data import Fact
from interference.evaluate import normalize_answer
from interference.records import FactOutcomes


def rate(mask) -> float:
    """Share of True in a boolean mask; nan for an empty one (no facts is not "0% forgotten")."""
    mask = np.asarray(mask, dtype=bool)
    return float(mask.mean()) if mask.size else math.nan


def check_same_facts(base: FactOutcomes, now: FactOutcomes) -> None:
    """Refuse two records that do not hold the same facts in the same order (compare by id, never by
    position); ``now.realign(base.fact_ids)`` is the explicit way to line them up."""
    if not (isinstance(base, FactOutcomes) and isinstance(now, FactOutcomes)):
        raise TypeError("compare records.FactOutcomes (from_results / from_rows / from_mask), not "
                        f"{type(base).__name__} and {type(now).__name__}.")
    if base.fact_ids != now.fact_ids:
        same_set = set(base.fact_ids) == set(now.fact_ids)
        raise ValueError("the two fact records " + ("hold the same facts in another order" if same_set else
                         f"hold different facts ({len(base)} vs {len(now)}, e.g. "
                         f"{sorted(set(base.fact_ids) ^ set(now.fact_ids))[0]!r} in only one)")
                         + "; realign one to the other's fact_ids first.")


def forgotten_mask(base: FactOutcomes, now: FactOutcomes, where=None) -> np.ndarray:
    """[n] bool: right in ``base`` (within ``where``: mask or fact ids) and wrong in ``now``."""
    check_same_facts(base, now)
    return base.correct & base.mask(where) & ~now.correct


def forgetting_rate(base: FactOutcomes, now: FactOutcomes, where=None) -> float:
    """Share of the facts ``base`` answered right (within ``where``: a boolean mask over the record
    or a collection of fact ids) that ``now`` answers wrong; nan when ``base`` knew none of them."""
    known = base.correct & base.mask(where)
    return rate(forgotten_mask(base, now, where)[known])


def forgotten_ids(base: FactOutcomes, now: FactOutcomes, where=None) -> list[str]:
    """Ids of the facts ``forgetting_rate`` counts as forgotten, in record order."""
    return [base.fact_ids[i] for i in np.flatnonzero(forgotten_mask(base, now, where))]


def load_timeline(path: str | Path) -> list[dict]:
    """Rows of a ``timeline.jsonl`` (a run directory or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "timeline.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no timeline at {path}; pass a finished fine-tuning run directory.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class ForgettingEvent:
    """The history of one fact that was right at its first evaluation (the base model's answer)."""

    fact_id: str
    set: str
    forgot_step: int | None  # first step at which it came out wrong; None if never
    recovered_step: int | None  # first later step at which it was right again
    final_correct: bool
    forgot_prediction: str | None  # the wrong answer at forgot_step
    final_prediction: str

    @property
    def forgotten(self) -> bool:
        """Wrong at the end of training (a new hallucination on a previously known fact)."""
        return not self.final_correct

    def to_dict(self) -> dict:
        return asdict(self)


def _by_fact(rows: Iterable[dict], set_name: str | None) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        if set_name is None or r["set"] == set_name:
            out[(r["set"], r["fact_id"])].append(r)
    for v in out.values():
        v.sort(key=lambda r: r["step"])
    return out


def _event(fid: str, set_name: str, hist: Sequence[Mapping]) -> ForgettingEvent | None:
    """The event of one fact from its evaluations sorted by step ({step, correct, prediction});
    None when it was wrong at the first one (never known, so it cannot be forgotten)."""
    if not hist[0]["correct"]:
        return None
    forgot = next((r for r in hist if not r["correct"]), None)
    recovered = None
    if forgot is not None:
        recovered = next((r["step"] for r in hist if r["step"] > forgot["step"] and r["correct"]), None)
    return ForgettingEvent(fid, set_name, None if forgot is None else forgot["step"], recovered,
                           bool(hist[-1]["correct"]), None if forgot is None else forgot["prediction"],
                           hist[-1]["prediction"])


def forgetting_events(rows: Iterable[dict], set_name: str | None = "stability") -> dict[str, ForgettingEvent]:
    """fact_id -> ForgettingEvent for every fact of ``set_name`` that was right at its first
    evaluation (step 0 is the base model). Facts the base already got wrong cannot be forgotten
    and are left out. With ``set_name=None`` keys are ``"{set}/{fact_id}"``."""
    out: dict[str, ForgettingEvent] = {}
    for (s, fid), hist in _by_fact(rows, set_name).items():
        ev = _event(fid, s, hist)
        if ev is not None:
            out[fid if set_name is not None else f"{s}/{fid}"] = ev
    return out


def events_between(base: FactOutcomes, now: FactOutcomes, set_name: str = "stability",
                   steps: tuple[int, int] = (0, 1)) -> dict[str, ForgettingEvent]:
    """``forgetting_events`` for two evaluations held as records (base model and end of training),
    matched by fact id; the same events a two-step timeline of these facts would give."""
    check_same_facts(base, now)
    out: dict[str, ForgettingEvent] = {}
    for i, fid in enumerate(base.fact_ids):
        hist = [{"step": steps[0], "correct": bool(base.correct[i]), "prediction": base.prediction[i]},
                {"step": steps[1], "correct": bool(now.correct[i]), "prediction": now.prediction[i]}]
        ev = _event(fid, set_name, hist)
        if ev is not None:
            out[fid] = ev
    return out


def forgetting_curves(rows: Iterable[dict]) -> dict[str, list[dict]]:
    """Per set, per evaluation step: accuracy, and the share of initially-right facts now wrong
    (``forgotten``). {set: [{"step", "accuracy", "forgotten", "n"}]} sorted by step."""
    rows = list(rows)
    first: dict[tuple[str, str], tuple[int, bool]] = {}
    for r in rows:
        key = (r["set"], r["fact_id"])
        if key not in first or r["step"] < first[key][0]:
            first[key] = (r["step"], bool(r["correct"]))
    acc: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # right, n, lost, known
    for r in rows:
        c = acc[(r["set"], r["step"])]
        c[0] += bool(r["correct"])
        c[1] += 1
        if first[(r["set"], r["fact_id"])][1]:
            c[3] += 1
            c[2] += not r["correct"]
    curves: dict[str, list[dict]] = defaultdict(list)
    for (s, step), (right, n, lost, known) in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        curves[s].append({"step": step, "accuracy": right / n, "forgotten": lost / known if known else float("nan"),
                          "n": n})
    return dict(curves)


@dataclass
class Signature:
    """How often forgotten facts took an overlapping new fact's value, against chance."""

    rate: float  # share of forgotten facts whose wrong answer is an overlapping new fact's value
    chance: float  # expected share if wrong answers were drawn from the value distribution
    hits: int
    n: int
    hit_fact_ids: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def overlap_values(fact: Fact, neighbours: Sequence[Fact]) -> set[str]:
    """Values of the overlapping new facts that could be confused with ``fact``: same relation,
    not the fact's own (right) answer."""
    gold = normalize_answer(fact.answer)
    vals = {normalize_answer(n.answer) for n in neighbours if n.relation == fact.relation}
    return vals - {gold}


def value_distribution(facts: Iterable[Fact]) -> dict[str, Counter]:
    """relation -> Counter of gold answers: a null for ``interference_signature`` (how often a
    value would come up if wrong answers were drawn like the answers of these facts)."""
    out: dict[str, Counter] = defaultdict(Counter)
    for f in facts:
        out[f.relation][f.answer] += 1
    return dict(out)


def interference_signature(events: Mapping[str, ForgettingEvent], facts: Mapping[str, Fact],
                           neighbours: Mapping[str, Sequence[Fact]],
                           value_dist: Mapping[str, Mapping[str, float]] | None = None) -> Signature:
    """Share of forgotten facts whose final wrong answer equals the value of an overlapping new
    fact of the same relation, and the chance rate of that.

    ``neighbours[fact_id]``: the new facts that overlap the fact (by representation or by name).
    ``value_dist[relation]``: value -> weight of wrong answers under the null. Default: the
    empirical distribution of the forgotten facts' own wrong answers per relation, so a model that
    collapses onto a few popular values does not pass for interference. The chance for one fact is
    the null mass on its overlapping values, renormalised without its right answer (a wrong
    answer is never the gold one); the reported chance is the mean over forgotten facts.
    """
    forgotten = [e for e in events.values() if e.forgotten]
    if value_dist is None:
        counts: dict[str, Counter] = defaultdict(Counter)
        for e in forgotten:
            counts[facts[e.fact_id].relation][normalize_answer(e.final_prediction)] += 1
        value_dist = counts
    hits: list[str] = []
    chance = 0.0
    for e in forgotten:
        f = facts[e.fact_id]
        cand = overlap_values(f, neighbours.get(e.fact_id, ()))
        if normalize_answer(e.final_prediction) in cand:
            hits.append(e.fact_id)
        dist = {normalize_answer(v): float(w) for v, w in value_dist.get(f.relation, {}).items()}
        mass = sum(w for v, w in dist.items() if v != normalize_answer(f.answer))
        chance += sum(dist.get(v, 0.0) for v in cand) / mass if mass > 0 else 0.0
    n = len(forgotten)
    return Signature(len(hits) / n if n else float("nan"), chance / n if n else float("nan"), len(hits), n, hits)
