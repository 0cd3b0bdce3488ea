"""The localized hypothesis runner: its designed entities, its decision rule, and summaries that
look results up by cell (arm, seed), never by position."""
from __future__ import annotations

import random

import numpy as np
import pytest

from interference.hypotheses import localized as L
from interference.hypotheses.localized_summary import decide_localized, index_results, per_seed
from interference.world import World, WorldConfig


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig())


def test_lookalikes_keep_exactly_the_chosen_positions(world):
    targets = L.targets_of(world, 30, seed=1)
    values = L.value_set(world, targets, seed=1)
    names = {e.pieces for e in world.entities}
    for keep in ((), (0,), (1,), (2,), (0, 1)):
        new = L.lookalikes(world, targets, keep, values, seed=1, arm_index=3)
        for t, e in zip(targets, new):
            assert len(e.pieces) == 3 and e.pieces not in names
            for i in range(3):
                if i in keep:
                    assert e.pieces[i] == t.pieces[i]
                else:
                    assert e.pieces[i] not in t.pieces
    assert len({e.eid for e in new} & {e.eid for e in world.entities}) == 0


def test_every_arm_teaches_the_same_values_and_none_is_a_targets_own(world):
    targets = L.targets_of(world, 20, seed=0)
    values = L.value_set(world, targets, seed=0)
    for t, v in zip(targets, values):
        assert all(val != t.value(r) for r, val in v)
    arms = {a: L.new_entities_for(world, L.ARMS[a], targets, values, 0, i)
            for i, a in enumerate(("share0", "share2", "uuid", "disjoint"))}
    for a, ents in arms.items():
        assert [e.values for e in ents] == values, a
    uuid_pieces = {p for e in arms["uuid"] for p in e.pieces}
    assert not uuid_pieces & {p for t in targets for p in t.pieces}


def test_targets_are_three_piece_statement_only_and_seeded(world):
    a, b = L.targets_of(world, 10, 0), L.targets_of(world, 10, 0)
    assert [e.eid for e in a] == [e.eid for e in b]
    assert all(e.split == "statement_only" and len(e.pieces) == 3 for e in a)
    with pytest.raises(ValueError, match="lower n_targets"):
        L.targets_of(world, 10_000, 0)


def test_preregistration_names_every_hypothesis_and_is_hashed():
    rec = L.PREREGISTERED.record()
    assert set(rec["predictions"]) == {"capacity", "behavior_cloning", "localized"}
    assert rec["hash"] == L.prereg_hash() and "dose_slope" in rec["endpoint"]


# ------------------------------------------------------------------ decision rule
def _e(v, lo, hi, n=5):
    return {"value": v, "low": lo, "high": hi, "n": n}


@pytest.mark.parametrize("slope,mono,excess,checks,want", [
    (_e(0.1, 0.05, 0.15), True, _e(0.7, 0.6, 0.8), True, "main_driver"),
    (_e(0.1, 0.05, 0.15), True, _e(0.4, 0.3, 0.5), True, "contributes"),
    (_e(0.1, 0.05, 0.15), False, _e(0.7, 0.6, 0.8), True, "inconclusive"),  # not monotone
    (_e(0.0, -0.01, 0.008), True, _e(0.7, 0.6, 0.8), True, "not_supported"),
    (_e(0.05, -0.02, 0.12), True, _e(0.7, 0.6, 0.8), True, "inconclusive"),
    (_e(0.1, 0.05, 0.15), True, _e(0.7, 0.6, 0.8), False, "inconclusive"),  # a required check failed
    (_e(0.1, 0.05, 0.15, n=1), True, _e(0.7, 0.6, 0.8), True, "inconclusive"),
])
def test_decide_localized_follows_the_registered_rule(slope, mono, excess, checks, want):
    assert decide_localized(slope, mono, excess, checks) == want


# ------------------------------------------------------------------ summaries keyed by cell
def _bits(mask):
    return "".join("1" if x else "0" for x in mask)


def _fake_results(seed_effects: dict[int, dict[str, float]]):
    """Constructed cells: 10 target facts (entity 1) and 30 rest facts (entities 2-4), every one
    known to the base; in arm a the targets lose round(10 * x) facts and the rest lose 6."""
    fids = [f"{e}:r{i}" for e in (1, 2, 3, 4) for i in range(10)]
    base = {"arm": "base", "fact_ids": fids, "base_ok": [True] * 40, "gold_logprob": [-0.1] * 40}
    out = [base]
    for seed, effects in seed_effects.items():
        for arm, x in effects.items():
            ok = np.ones(40, bool)
            ok[: round(10 * x)] = False
            ok[10:16] = False
            read = {"step": 50, "plasticity": 1.0, "correct": _bits(ok), "predictions": ["v"] * 40}
            out.append({"arm": arm, "seed": seed, "fact_ids": fids, "entity_ids": [f.split(":")[0] for f in fids],
                        "target_eids": ["1"], "pair_value": {},
                        "reads": {"learned": read, "final": read}})
    return out


def test_per_seed_dose_slope_from_constructed_cells():
    res = _fake_results({0: {"share0": 0.2, "share1_first": 0.4, "share2": 0.6}})
    base, runs = index_results(res)
    m = per_seed(0, base, runs, ("share0", "share1_first", "share2"), n_layers=2)
    # rest forgets 6/30 = 0.2 everywhere; contrasts 0.0, 0.2, 0.4 -> slope 0.2 per piece
    assert m["learned/share0/contrast"] == pytest.approx(0.0)
    assert m["learned/share2/contrast"] == pytest.approx(0.4)
    assert m["learned/dose_slope"] == pytest.approx(0.2)
    assert m["learned/share2_excess_share"] == pytest.approx(0.4 / 0.6)


def test_summary_does_not_depend_on_result_order():
    res = _fake_results({0: {"share0": 0.2, "share1_first": 0.4, "share2": 0.6},
                         1: {"share0": 0.1, "share1_first": 0.3, "share2": 0.3}})
    shuffled = [res[0]] + random.Random(3).sample(res[1:], len(res) - 1)
    arms = ("share0", "share1_first", "share2")
    a = [per_seed(s, *index_results(res), arms, 2) for s in (0, 1)]
    b = [per_seed(s, *index_results(shuffled), arms, 2) for s in (0, 1)]
    assert a == b
    assert a[1]["learned/dose_slope"] == pytest.approx(0.1)  # contrasts -0.1, 0.1, 0.1


def test_index_refuses_duplicate_cells():
    res = _fake_results({0: {"share0": 0.2}})
    with pytest.raises(ValueError, match="two results"):
        index_results(res + [res[1]])
