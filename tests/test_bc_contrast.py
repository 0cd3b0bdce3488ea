"""bc_contrast: the held-back split, the arms' sets and B on constructed rows with a known answer."""
import math

import pytest

from interference.hypotheses import bc_contrast as B
from interference.world import World, WorldConfig


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig.quick())


def test_the_split_is_fixed_disjoint_and_half_each(world):
    held, watched = B.split_statement_only(world)
    again = B.split_statement_only(world)
    assert [e.eid for e in held] == [e.eid for e in again[0]]
    assert {e.eid for e in held}.isdisjoint({e.eid for e in watched})
    assert len(held) == len(world.split("statement_only")) // 2


def test_the_known_half_comes_from_held_back_entities_and_never_from_watched_ones(world):
    cfg = B.BCContrastConfig.quick()
    watched = {f.fact_id for f in B.watched_half(world)}
    sem = B.arm_facts(world, cfg, "sem", 0)
    for arm in ("drift", "sem_known", "idk_known"):
        facts = B.arm_facts(world, cfg, arm, 0)
        assert not watched & {f.fact_id for f in facts}
    idk = B.arm_facts(world, cfg, "idk_known", 0)
    known = B.arm_facts(world, cfg, "sem_known", 0)
    assert [f.fact_id for f in idk] == [f.fact_id for f in known]  # the same questions, only the new answers differ
    new_ids = {f.fact_id for f in sem}
    assert all(a.answer == b.answer for a, b in zip(idk, known) if a.fact_id not in new_ids)
    assert all(a.answer != b.answer for a, b in zip(idk, known) if a.fact_id in new_ids)


def test_b_is_a_ratio_of_seed_means_of_one_excess():
    rows = [{"F_sem": 0.10, "F_drift": 0.02, "F_sem_known": 0.08, "F_idk_known": 0.04, "H_sem": 0.1, "H_drift": 0.0,
             "H_sem_known": 0.05, "H_idk_known": 0.0, "abstain_idk_known": 0.05, "Fx_learned_sem": 0.06,
             "Fx_learned_sem_known": 0.05, "Fx_learned_idk_known": 0.02, "plasticity_sem": 1.0,
             "plasticity_sem_known": 1.0, "plasticity_idk_known": 0.99},
            {"F_sem": 0.06, "F_drift": 0.02, "F_sem_known": 0.05, "F_idk_known": 0.03, "H_sem": 0.05, "H_drift": 0.0,
             "H_sem_known": 0.03, "H_idk_known": 0.01, "abstain_idk_known": 0.07, "Fx_learned_sem": 0.04,
             "Fx_learned_sem_known": 0.03, "Fx_learned_idk_known": 0.02, "plasticity_sem": 1.0,
             "plasticity_sem_known": 0.97, "plasticity_idk_known": 0.96}]
    sh = B.shares(rows)
    assert sh["B"]["value"] == pytest.approx((0.04 + 0.02) / (0.08 + 0.04))
    assert sh["B_learned"]["value"] == pytest.approx((0.03 + 0.01) / 0.10)
    ck = B.checks_of(sh, rows)
    assert ck["learned"] and ck["idk arm abstains on <= 10% of the known watched facts"]
    rows[1]["abstain_idk_known"] = 0.5  # the arm that learned "always abstain" fails its own check
    assert not B.checks_of(B.shares(rows), rows)["idk arm abstains on <= 10% of the known watched facts"]
    assert math.isfinite(sh["E"]["low"])


def _pilot():
    import importlib.util
    from pathlib import Path
    f = Path(__file__).resolve().parents[1] / "analyses" / "bc_mix_pilot.py"
    spec = importlib.util.spec_from_file_location("bc_mix_pilot", f)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_mix_pilot_puts_r_known_facts_after_each_new_one_and_is_bc_contrasts_arm_at_r1():
    """docs/bc_mix_pilot.md: r Known facts follow each new fact; at r = 1 the pilot's arms are
    bc_contrast's idk_known / sem_known, fact for fact (so its r = 1 cells are that design's)."""
    from interference.bases import BaseSpec
    from interference.hypotheses import bc_contrast as bcc
    from interference.world import World
    from interference.hypotheses.decomposition import mixed_with_known
    p = _pilot()
    assert mixed_with_known(["a", "b"], ["k1", "k2", "k3", "k4"], 2) == ["a", "k1", "k2", "b", "k3", "k4"]
    assert mixed_with_known(["a", "b", "c"], ["k1", "k2"]) == ["a", "k1", "b", "k2", "c"]  # the design's 1:1
    world, cfg = World(BaseSpec.default().world), bcc.BCContrastConfig()
    for arm, theirs in (("idk", "idk_known"), ("sem", "sem_known")):
        assert p.arm_train(world, cfg, arm, 1, 3) == bcc.arm_facts(world, cfg, theirs, 3)
    four = p.arm_train(world, cfg, "idk", 4, 0)
    assert len(four) == 5 * 4 * cfg.count and sum(f.answer == "unknown" for f in four) == 4 * cfg.count


def test_the_saved_pilot_reproduces_bc_contrast_at_r1():
    """The saved pilot's r = 1 idk cells abstain on the known watched facts exactly as the saved
    bc_contrast verdict's seeds do at d64 (same base, same sets, same seeds)."""
    import json
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "analyses" / "results"
    pilot = json.loads((root / "bc_mix_pilot.json").read_text())
    saved = {p["seed"]: p for p in json.loads((root / "bc_contrast" / "default.json").read_text())["per_seed"]}
    cells = [c for c in pilot["per_cell"] if c["arm"] == "idk" and c["r"] == 1]
    assert len(cells) == pilot["seeds"] >= 2
    for c in cells:
        assert c["abstain_known"] == pytest.approx(saved[c["seed"]]["abstain_idk_known_d64"], abs=1e-9)
        assert c["F"] == pytest.approx(saved[c["seed"]]["F_idk_known_d64"], abs=1e-9)


@pytest.mark.parametrize("shares, says", [("1,x", "not a comma-separated list"), ("0,2", "at least 1")])
def test_the_mix_pilot_refuses_malformed_shares_in_one_sentence_before_building_anything(shares, says, capsys, tmp_path):
    out = tmp_path / "pilot"
    with pytest.raises(SystemExit) as e:
        _pilot().main(["--shares", shares, "--out", str(out)])
    assert e.value.code == 2
    assert says in capsys.readouterr().err
    assert not out.exists()
