"""Culprit attribution (forecast/culprits.py): the pair products are the forecast's, the ranking
and the removal budget behave on constructed score matrices, and on the quick base a look-alike
planted for one known fact (sharing its name pieces, teaching another value of its relation) in
a set of unrelated uuid facts is that fact's first culprit."""
from __future__ import annotations

import numpy as np
import pytest

from interference.forecast import culprits as C


def test_top_culprits_rank_positive_scores_and_sum_the_rescue():
    scores = np.array([[0.1, -0.5, 0.7, 0.2],
                       [-0.1, -0.2, -0.3, -0.4]])
    c = C.top_culprits(scores, ["w0", "w1"], ["a", "b", "c", "d"], k=2)
    assert c.of("w0") == [("c", 0.7), ("d", 0.2)]
    assert c.of("w1") == []  # nothing raises w1's loss: no culprit
    assert c.rescue[0] == pytest.approx(0.9) and c.rise[0] == pytest.approx(0.5)
    assert c.row(0)["rescue_share"] == pytest.approx(1.8)
    assert c.row(1)["rescue_share"] is None  # the set lowers its loss: no share of a rise
    only = C.top_culprits(scores, ["w0", "w1"], ["a", "b", "c", "d"], k=2, among=np.array([1, 1, 0, 1], bool))
    assert only.of("w0") == [("d", 0.2), ("a", 0.1)]
    with pytest.raises(KeyError, match="not among the watched"):
        c.of("zz")


def test_choose_removals_gives_every_target_its_top_culprit_first():
    scores = np.array([[9.0, 8.0, 7.0, 0.0, 0.0],
                       [0.0, 0.0, 0.0, 1.0, 0.5],
                       [9.5, 0.0, 0.0, 0.0, 0.1]])
    c = C.top_culprits(scores, ["x", "y", "z"], list("abcde"), k=3)
    # x takes a, y takes d, z's best (a) is taken so it takes e; round two: x takes b
    assert C.choose_removals(c, ["x", "y", "z"], 4) == ["a", "d", "e", "b"]
    assert C.choose_removals(c, ["y"], 10) == ["d", "e"]  # the list runs out
    assert C.choose_removals(c, ["x"], 0) == []
    with pytest.raises(KeyError):
        C.choose_removals(c, ["nope"], 1)


def test_step_scale_is_one_examples_share_of_the_run():
    assert C.step_scale(1e-3, 100, 50) == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="positive"):
        C.step_scale(0.0, 10, 5)


def _plant(world, stmt, target):
    """A look-alike of ``target``'s entity (2 of its 3 name pieces, same positions) taught another
    value of ``target``'s relation, among 30 uuid facts of the other relations (no shared piece,
    no shared relation: unrelated by construction)."""
    ent = next(e for e in stmt if str(e.eid) == target.entity_id)
    other = next(e for e in stmt if e.value(target.relation) != ent.value(target.relation))
    look = world.new_entities(1, "semantic", seed=7, overlap_with=[ent], shared_pieces=2, values_from=[other])
    plant = next(f for f in world.facts(look) if f.relation == target.relation)
    unrelated = [f for f in world.facts(world.new_entities(20, "uuid", seed=7)) if f.relation != target.relation][:30]
    return plant, unrelated[:15] + [plant] + unrelated[15:]


@pytest.fixture(scope="module")
def planted(quick_base):
    """Known facts of 3-piece entities, each with its planted look-alike and SFT set; ``confused``:
    whether the base answers the look-alike with the target's own value (the look-alike then is
    one to the model, not only by its spelling)."""
    from interference.bases import load_slick
    from interference.evaluate import score_facts
    model, tok, world, run_dir = quick_base
    model.eval()
    slick = load_slick(run_dir)
    stmt = world.split("statement_only")
    three = {str(e.eid) for e in stmt if len(e.pieces) == 3}
    known = [f for f in world.facts(stmt) if slick.get(f.fact_id, {}).get("category") == "HighlyKnown"]
    cases = []
    for target in [f for f in known if f.entity_id in three][:24]:
        plant, train = _plant(world, stmt, target)
        assert plant.answer != target.answer
        confused = score_facts(model, tok, [plant])[0].prediction == target.answer
        cases.append((target, plant, train, confused))
    return model, tok, known, cases


def test_pair_products_equal_the_forecasts_pairs(planted, one_thread):
    from interference.forecast.gradients import alignment
    model, tok, known, cases = planted
    train = cases[0][2]
    mine = C.pair_products(model, tok, known[:4], train[:9], batch_size=3)
    ref = alignment(model, tok, known[:4], train[:9]).pair
    np.testing.assert_allclose(mine, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def test_planted_lookalike_is_the_known_facts_first_culprit(planted, one_thread):
    model, tok, known, cases = planted
    hits = [(t, p, tr) for t, p, tr, confused in cases if confused]
    assert len(hits) >= 3, "the quick base confuses too few planted look-alikes to test on"
    for target, plant, train in hits:
        watch = [target] + [f for f in known if f.relation != target.relation][:5]
        c, scores = C.culprits(model, tok, watch, train, k=3)
        assert scores.shape == (len(watch), len(train))
        assert c.of(target.fact_id)[0][0] == plant.fact_id, target.fact_id
        # the look-alike is that fact's culprit, not everyone's: facts of other relations rank it lower
        j = [f.fact_id for f in train].index(plant.fact_id)
        assert scores[0, j] > np.median(scores[1:, j])
