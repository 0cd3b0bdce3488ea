"""Pre-training to a criterion: the schedule, the stop rule, and bases that share phase 1."""
import dataclasses
import json
import math
import re

import pytest

from interference import pretrain as pt
from interference.consolidation import ConsolidationRule
from interference.loop import lr_multiplier
from interference.models import ModelConfig
from interference.bases import BaseSpec, PretrainConfig
from interference.world import WorldConfig


def test_pretraining_schedule_warms_up_holds_until_m_then_decays_to_the_floor():
    """The two phases' loop settings make the documented schedule out of the loop's one schedule."""
    cfg = PretrainConfig(warmup=10, min_lr_ratio=0.1, memorise_cap=5000)
    one = pt.phase_loop_config(cfg, "memorise")

    def mult(c, step):
        return lr_multiplier(step, c.steps, c.warmup, c.min_lr_ratio)
    assert mult(one, 0) == pytest.approx(0.1) and mult(one, 9) == pytest.approx(1.0)
    assert mult(one, 100) == pytest.approx(1.0) and mult(one, 4999) == pytest.approx(1.0)  # m unknown: the peak
    rule = ConsolidationRule(consolidation=0.5, cap=5000)
    with pytest.raises(ValueError, match="has found m"):
        pt.phase_loop_config(cfg, "consolidate", rule)
    rule.observe(100, 0.99)
    two = pt.phase_loop_config(cfg, "consolidate", rule)
    assert two.steps == 150 and mult(two, 100) == pytest.approx(1.0)  # decay starts at m, from the peak
    assert mult(two, 125) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert mult(two, 150) == pytest.approx(0.1)
    fixed = pt.phase_loop_config(dataclasses.replace(cfg, consolidation=None, steps=3000, warmup=200), "fixed")
    assert mult(fixed, 200 + 2800 // 2) == pytest.approx(0.55)


def test_rule_finds_memorisation_and_scales_the_run():
    r = ConsolidationRule(consolidation=1.5, memorised_at=0.99, cap=1000)
    for step, acc in [(50, 0.3), (100, 0.98), (150, 0.995), (200, 1.0)]:
        r.observe(step, acc)
    assert r.memorised_step == 150 and r.memorised
    assert r.decay_steps == 225 and r.total_steps == 375
    assert not r.done(374) and r.done(375)
    capped = ConsolidationRule(consolidation=2.0, cap=100)
    capped.observe(50, 0.5)
    assert capped.total_steps is None
    capped.observe(100, 0.5)
    assert capped.memorised_step == 100 and not capped.memorised and capped.total_steps == 300
    with pytest.raises(ValueError, match="consolidation"):
        ConsolidationRule(consolidation=-1)
    with pytest.raises(ValueError, match="consolidation"):
        ConsolidationRule(consolidation=math.nan)


def _micro(consolidation) -> BaseSpec:
    world = WorldConfig(n_pieces=16, n_uuid_pieces=8, n_filler=3, n_disjoint_pieces=4, n_disjoint_pretrain=2,
                        n_pretrain_qa=12, n_statement_only=12, n_unseen=6, relations=("born_in", "speaks"), n_values=6)
    return BaseSpec(world, ModelConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64),
                    PretrainConfig(batch_size=16, warmup=5, eval_every=10, ckpt_every=1000, slick_samples=2, lr=5e-3,
                                   consolidation=consolidation, check_every=10, memorised_at=0.9, memorise_cap=600))


def test_bases_at_two_levels_share_the_memorised_phase(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERFERENCE_CACHE", str(tmp_path / "cache"))
    a, b = _micro(0.5), _micro(1.0)
    assert a.hash() != b.hash() and a.phase1_hash() == b.phase1_hash()
    ma = pt.pretrain(a, tmp_path / "a", device="cpu", progress=False)
    c = ma["consolidation"]
    m = c["memorised_step"]
    assert c["memorised"] and m % 10 == 0 and 0 < m < 600
    assert ma["steps"] == m + round(0.5 * m) and not c["resumed_from_memorised"]
    mb = pt.pretrain(b, tmp_path / "b", device="cpu", progress=False)
    assert mb["consolidation"]["resumed_from_memorised"] and mb["consolidation"]["memorised_step"] == m
    assert mb["steps"] == 2 * m
    # the shared phase is the same run: identical history up to m
    assert [h for h in ma["history"] if h["step"] <= m] == [h for h in mb["history"] if h["step"] <= m]
    assert json.loads((tmp_path / "b" / "config.json").read_text())["pretrain"]["consolidation"] == 1.0


def test_cli_refuses_steps_with_consolidation(tmp_path, capsys):
    assert pt.main(["--steps", "10", "--consolidation", "1", "--out", str(tmp_path / "x")]) == 2
    assert "exclude each other" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_help_states_the_default_the_spec_uses(capsys):
    with pytest.raises(SystemExit):
        pt.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    m = re.search(r"memorisation step \(default ([0-9.]+)[;)]", text)
    assert m, text
    assert float(m.group(1)) == BaseSpec.default().pretrain.consolidation
