"""bc_self, behavior cloning's share from the self-answer arm: its sets, its checks and words on
constructed reads with known answers, and one quick run through the CLI."""
import json
import math
from pathlib import Path

import pytest

from interference.hypotheses import bc_self as S
from interference.hypotheses import decomposition as dc
from interference.world import World, WorldConfig


def _rows(F_sem, F_drift, F_self, pend_self=1.0, plasticity_sem=1.0, n=4):
    """Seeds wobbling around the given forgetting (an interval needs spread), the wobble shared by
    the three arms so the excess is exact per seed."""
    rows = []
    for s in range(n):
        e = 0.002 * (s - (n - 1) / 2)
        rows.append({"seed": s, "F_sem": F_sem + e, "F_drift": F_drift + e, "F_self": F_self + e + 0.1 * e,
                     "D_sem": 10.0, "D_self": 5.0, "Fl_sem": F_sem, "Fl_drift": F_drift, "Fl_self": F_self + e,
                     "H_sem": F_sem, "H_drift": F_drift, "H_self": F_self + e, "pend_self": pend_self,
                     "plasticity_sem": plasticity_sem})
    return rows


def test_the_self_and_sem_arms_ask_the_decompositions_questions_and_drift_is_its_known_set():
    world = World(WorldConfig.quick())
    cfg = S.BCSelfConfig.quick()
    dcfg = dc.DecompositionConfig.quick()
    assert cfg.count == dcfg.count
    for seed in (0, 5):
        sem = S.arm_facts(world, cfg, "sem", seed)
        assert [f.fact_id for f in sem] == [f.fact_id for f in dc.arm_facts(world, dcfg, "sem", seed)]
        assert [f.fact_id for f in S.arm_facts(world, cfg, "self", seed)] == [f.fact_id for f in sem]
        assert [f.fact_id for f in S.arm_facts(world, cfg, "drift", seed)] == \
            [f.fact_id for f in dc.arm_facts(world, dcfg, "drift", seed)]
    with pytest.raises(ValueError, match="unknown arm 'uuid'; bc_self has sem, drift, self"):
        S.arm_facts(world, cfg, "uuid", 0)


def test_the_registered_seeds_are_fresh_and_the_config_refuses_nonsense():
    from interference.hypotheses.grid import seed_range
    assert list(seed_range(S.BCSelfConfig())) == list(range(4, 12))  # the pilot saw 0-3
    with pytest.raises(ValueError, match="first_seed >= 0"):
        S.BCSelfConfig(first_seed=-1)


def test_a_small_clear_share_contributes_and_a_failed_check_withholds_it():
    # excess 0.2, self's excess 0.02: G = 0.1 with a tight interval above 0 -> contributes
    rd = S.reads(_rows(0.2, 0.0, 0.02))
    assert rd["G"]["value"] == pytest.approx(0.1, abs=2e-3) and rd["G"]["low"] > 0
    assert rd["M"]["value"] == pytest.approx(0.5) and rd["R"]["value"] == pytest.approx(0.2, abs=5e-3)
    ck = S.checks_of(rd)
    assert all(ck.values())
    assert S.PREREGISTERED.decide(rd["G"], checks_pass=True) == "contributes"
    # the self arm that did not learn its own answers fails its check: the positive word goes
    bad = S.checks_of(S.reads(_rows(0.2, 0.0, 0.02, pend_self=0.8)))
    assert not bad["self arm learned its targets"] and bad["excess"]
    assert S.PREREGISTERED.decide(rd["G"], checks_pass=False) == "inconclusive"


def test_no_share_beyond_drift_is_not_supported_and_most_of_it_is_main_driver():
    none = S.reads(_rows(0.2, 0.01, 0.01))
    assert abs(none["G"]["value"]) < 0.01 and none["G"]["high"] < 0.1
    assert S.PREREGISTERED.decide(none["G"]) == "not_supported"
    most = S.reads(_rows(0.2, 0.0, 0.16))
    assert most["G"]["low"] >= 0.5 and S.PREREGISTERED.decide(most["G"]) == "main_driver"
    no_excess = S.checks_of(S.reads(_rows(0.01, 0.01, 0.01)))
    assert not no_excess["excess"]
    missing = S.checks_of({"E": {"low": None}, "plasticity_sem": {"value": None}, "pend_self": {"value": math.nan}})
    assert not any(missing.values())  # a missing number passes no check


def test_quick_run_writes_a_word_per_width_from_the_configured_seeds(quick_base, tmp_path):
    from interference.run_hypothesis import main
    out = tmp_path / "o"
    rc = main(["bc_self", "--quick", "--seeds", "2", "--first-seed", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    v = json.loads((out / "bc_self" / "verdict.json").read_text())
    assert v["seed_numbers"] == [3, 4] and v["seeds"] == 2
    assert set(v["words"]) == {"32"}
    # the saved word is the rule applied to the saved share and checks
    checks_pass = all(ok for k, ok in v["checks"].items() if k.startswith("d32 "))
    assert v["words"]["32"]["step_matched"] == S.PREREGISTERED.decide(v["series"]["by_width"]["32"]["G"], checks_pass)
    rows = json.loads((out / "bc_self" / "per_seed.json").read_text())
    assert [(r["width"], r["seed"]) for r in rows] == [(32, 3), (32, 4)]
    # the self arm's targets are the base's own answers: it starts far more confident than sem
    assert all(r["p0_self"] > r["p0_sem"] for r in rows)
    assert v["preregistered"]["hash"] == S.PREREGISTERED.hash()
    assert sorted(Path(p).name for p in v["plots"]) == ["bc_self.pdf", "bc_self.png"]
    assert all(Path(p).stat().st_size > 0 for p in v["plots"])
