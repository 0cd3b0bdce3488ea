"""Forgetting events, curves and the interference signature on a timeline built by hand."""
import json

import pytest

from interference.data import Fact
from interference.metrics.forgetting import (forgetting_curves, forgetting_events, interference_signature,
                                             load_timeline, overlap_values)


def _row(step, fid, correct, pred, s="stability"):
    return {"step": step, "fact_id": fid, "set": s, "outcome": "correct" if correct else "wrong",
            "correct": correct, "gold_logprob": 0.0, "prediction": pred}


# a: right -> wrong at 20 (city_5), stays wrong      -> forgotten, takes new fact n1's value
# b: right -> wrong at 10 -> right at 20              -> recovered
# c: right throughout                                -> never forgotten
# d: wrong at step 0                                 -> not known, left out
# e: right -> wrong at 10 (city_9), stays wrong      -> forgotten, value of no overlapping new fact
TIMELINE = [
    _row(0, "a", True, "city_1"), _row(10, "a", True, "city_1"), _row(20, "a", False, "city_5"), _row(30, "a", False, "city_5"),
    _row(0, "b", True, "city_2"), _row(10, "b", False, "city_7"), _row(20, "b", True, "city_2"), _row(30, "b", True, "city_2"),
    _row(0, "c", True, "city_3"), _row(10, "c", True, "city_3"), _row(20, "c", True, "city_3"), _row(30, "c", True, "city_3"),
    _row(0, "d", False, "city_8"), _row(10, "d", False, "city_8"), _row(20, "d", True, "city_4"), _row(30, "d", False, "city_8"),
    _row(0, "e", True, "city_6"), _row(10, "e", False, "city_9"), _row(20, "e", False, "city_9"), _row(30, "e", False, "city_9"),
    _row(0, "n1", False, "city_0", "plasticity"), _row(30, "n1", True, "city_5", "plasticity"),
]
FACTS = {fid: Fact(fid, f"subj {fid}", "born_in", gold, "Q: ?", "statement_only")
         for fid, gold in [("a", "city_1"), ("b", "city_2"), ("c", "city_3"), ("d", "city_4"), ("e", "city_6")]}
NEW = {"n1": Fact("n1", "subj n1", "born_in", "city_5", "Q: ?", "new"),
       "n2": Fact("n2", "subj n2", "works_as", "city_9", "Q: ?", "new"),  # other relation: never counts
       "n3": Fact("n3", "subj n3", "born_in", "city_6", "Q: ?", "new")}  # e's own answer: never counts


def test_events_by_hand():
    ev = forgetting_events(TIMELINE)
    assert sorted(ev) == ["a", "b", "c", "e"]
    assert (ev["a"].forgot_step, ev["a"].recovered_step, ev["a"].forgotten, ev["a"].forgot_prediction) == (20, None, True, "city_5")
    assert (ev["b"].forgot_step, ev["b"].recovered_step, ev["b"].forgotten) == (10, 20, False)
    assert (ev["c"].forgot_step, ev["c"].recovered_step, ev["c"].forgotten) == (None, None, False)
    assert (ev["e"].forgot_step, ev["e"].final_prediction) == (10, "city_9")
    both = forgetting_events(TIMELINE, set_name=None)
    assert "stability/a" in both and "plasticity/n1" not in both  # n1 was wrong at step 0


def test_curves_by_hand():
    c = forgetting_curves(TIMELINE)["stability"]
    assert [p["step"] for p in c] == [0, 10, 20, 30]
    assert [p["accuracy"] for p in c] == [4 / 5, 2 / 5, 3 / 5, 2 / 5]
    assert [p["forgotten"] for p in c] == [0.0, 2 / 4, 2 / 4, 2 / 4]  # over the 4 facts known at step 0


def test_signature_by_hand():
    ev = forgetting_events(TIMELINE)
    neighbours = {"a": [NEW["n1"], NEW["n2"]], "e": [NEW["n2"], NEW["n3"]]}
    assert overlap_values(FACTS["e"], neighbours["e"]) == set()
    # default null: the forgotten facts' own wrong answers: born_in -> {city_5: 1, city_9: 1}
    sig = interference_signature(ev, FACTS, neighbours)
    assert (sig.n, sig.hits, sig.hit_fact_ids) == (2, 1, ["a"])
    assert sig.rate == 0.5
    assert sig.chance == pytest.approx((0.5 + 0.0) / 2)  # a: city_5 has half the mass; e: no candidates
    # uniform null over 10 cities: a's chance = 1 / 9 (its gold city_1 excluded), e's = 0
    uniform = {"born_in": {f"city_{i}": 1.0 for i in range(10)}}
    sig_u = interference_signature(ev, FACTS, neighbours, uniform)
    assert sig_u.chance == pytest.approx((1 / 9) / 2)


def test_load_timeline(tmp_path):
    (tmp_path / "timeline.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TIMELINE))
    assert load_timeline(tmp_path) == TIMELINE
    with pytest.raises(FileNotFoundError, match="no timeline"):
        load_timeline(tmp_path / "nope")
