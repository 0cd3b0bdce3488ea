"""The per-fact record and the one forgetting function, on constructed records with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from interference.evaluate import FactResult
from interference.metrics.forgetting import events_between, forgetting_events, forgetting_rate, forgotten_ids, rate
from interference.records import FactOutcomes

IDS = ["a", "b", "c", "d", "e"]
BASE = FactOutcomes.from_mask(IDS, [True, True, True, False, True], ["x", "y", "z", "w", "v"])
NOW = FactOutcomes.from_mask(IDS, [True, False, False, True, True], ["x", "q", "r", "w", "v"])


def test_forgetting_by_hand():
    # known: a b c e; now wrong: b c -> 2 / 4; d was never known and its recovery does not count
    assert forgetting_rate(BASE, NOW) == 0.5
    assert forgotten_ids(BASE, NOW) == ["b", "c"]
    assert forgetting_rate(BASE, NOW, where=np.array([True, True, False, False, False])) == 0.5  # a, b
    assert forgetting_rate(BASE, NOW, where={"c", "e"}) == 0.5
    assert forgetting_rate(BASE, NOW, where={"a", "e"}) == 0.0
    assert math.isnan(forgetting_rate(BASE, NOW, where={"d"}))  # no known fact: not "0% forgotten"
    assert math.isnan(rate(np.zeros(0, dtype=bool)))


def test_shuffled_order_is_refused_and_realign_restores_the_answer():
    perm = [0, 3, 2, 1, 4]  # b moves onto d's position, which the base did not know
    shuffled = FactOutcomes.from_mask([IDS[i] for i in perm], NOW.correct[perm])
    with pytest.raises(ValueError, match="same facts in another order"):
        forgetting_rate(BASE, shuffled)
    assert forgetting_rate(BASE, shuffled.realign(BASE.fact_ids)) == 0.5
    # positional matching would have answered something else: the test can tell the two apart
    assert float((BASE.correct & ~shuffled.correct).sum() / BASE.correct.sum()) == 0.25


def test_other_facts_are_refused():
    other = FactOutcomes.from_mask(["a", "b", "c", "d", "z"], NOW.correct)
    with pytest.raises(ValueError, match="different facts"):
        forgetting_rate(BASE, other)
    with pytest.raises(ValueError, match="not in this record"):
        other.realign(IDS)
    with pytest.raises(ValueError, match="not in this record"):
        forgetting_rate(BASE, NOW, where={"zz"})
    with pytest.raises(ValueError, match="one entry per fact"):
        forgetting_rate(BASE, NOW, where=np.array([True, False]))


def test_record_validation():
    with pytest.raises(ValueError, match="appears twice"):
        FactOutcomes.from_mask(["a", "a"], [True, False])
    with pytest.raises(ValueError, match="one entry per fact"):
        FactOutcomes.from_mask(["a", "b"], [True])


def test_three_sources_give_the_same_record():
    results = [FactResult("a", "x", True, -0.1, 0.9, "correct"), FactResult("b", "q", False, -2.0, 0.8, "hallucination")]
    rows = [{"step": 0, "fact_id": "zz", "set": "plasticity", "correct": False, "outcome": "wrong", "prediction": "k"},
            {"step": 5, "fact_id": "a", "set": "stability", "correct": True, "outcome": "correct", "prediction": "x",
             "gold_logprob": -0.1},
            {"step": 5, "fact_id": "b", "set": "stability", "correct": False, "outcome": "hallucination",
             "prediction": "q", "gold_logprob": -2.0}]
    r1, r2 = FactOutcomes.from_results(results), FactOutcomes.from_rows(rows, step=5, set_name="stability")
    r3 = FactOutcomes.from_mask(["a", "b"], [True, False], ["x", "q"])
    assert r1.fact_ids == r2.fact_ids == r3.fact_ids == ("a", "b")
    assert r1.correct.tolist() == r2.correct.tolist() == r3.correct.tolist() == [True, False]
    assert r1.prediction == r2.prediction == r3.prediction
    assert r1.gold_logprob.tolist() == r2.gold_logprob.tolist() == [-0.1, -2.0]
    assert np.isnan(r3.gold_logprob).all() and r3.outcome == (None, None)
    with pytest.raises(ValueError, match="appears twice"):
        FactOutcomes.from_rows(rows[1:] + [dict(rows[1], step=6)])  # two steps of one fact: pick a step


def test_events_between_match_a_two_step_timeline():
    ev = events_between(BASE, NOW)
    rows = [{"step": s, "fact_id": f, "set": "stability", "correct": bool(r.correct[i]), "prediction": r.prediction[i]}
            for s, r in ((0, BASE), (1, NOW)) for i, f in enumerate(IDS)]
    assert ev == forgetting_events(rows)
    assert sorted(ev) == ["a", "b", "c", "e"] and [f for f, e in ev.items() if e.forgotten] == ["b", "c"]
    assert ev["b"].forgot_prediction == "q"


def test_base_and_final_pairs_step_zero_with_the_last_step_by_fact_id():
    rows = [{"step": s, "set": st, "fact_id": f, "correct": c}
            for s, st, f, c in [(0, "stability", "a", True), (0, "stability", "b", True), (0, "plasticity", "n", False),
                                (50, "stability", "b", False), (50, "stability", "a", True),
                                (100, "stability", "b", True), (100, "stability", "a", False),
                                (100, "plasticity", "n", True)]]
    base, final = FactOutcomes.base_and_final(rows)
    assert base.fact_ids == final.fact_ids == ("a", "b")  # the last step, reordered to the base's ids
    assert final.correct.tolist() == [False, True]
    b, f = FactOutcomes.base_and_final(rows, "plasticity")
    assert (b.correct.tolist(), f.correct.tolist()) == ([False], [True])
