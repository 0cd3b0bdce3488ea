"""The pre-grid learning-rate rule of the real-model runners (``hypotheses.real_lr``) on a
constructed sweep: which rate it picks, when it refuses, that a given ``--lr`` skips the sweep but
not the destroyed check, and that a finished sweep is read back instead of re-run."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from interference.hypotheses import real_lr
from interference.train import SFTSpec
from interference.hypotheses.real_lr import CANDIDATES, DESTROYED, DRIFT_BOUND, LearningRateError


def _ctx(tmp_path: Path):
    facts = [SimpleNamespace(fact_id=f"w{i}", answer="a") for i in range(10)]
    return SimpleNamespace(watch=facts, slick_dir=tmp_path, spec=SimpleNamespace(hash=lambda: "base"),
                           base=lambda: (None, None),
                           score=lambda m, t, fs: [SimpleNamespace(correct=True) for _ in fs])


@pytest.fixture
def sweep(monkeypatch):
    """A model whose Known-only drift halves per candidate step down and which learns new facts
    at every rate up to ``learned_below``; records the rates tried."""
    tried = []
    table = {"drift": dict(zip(CANDIDATES, (0.9, 0.6, 0.2, 0.04, 0.01, 0.0, 0.0))), "learned_below": 1.0}

    def fake_try(ctx, spec, lr, steps, known, new, watch, base_ok, learned_at, check_learning):
        tried.append(lr)
        row = {"lr": lr, "known_only_drift": table["drift"][lr]}
        if check_learning and row["known_only_drift"] < DRIFT_BOUND:
            row["new_learned"] = 1.0 if lr <= table["learned_below"] else 0.5
        return row
    fact = SimpleNamespace(fact_id="k", answer="a")
    monkeypatch.setattr(real_lr, "_try", fake_try)
    monkeypatch.setattr(real_lr, "sweep_known_facts", lambda ctx, n: [fact] * n)
    monkeypatch.setattr(real_lr, "sweep_new_facts", lambda ctx, n: [fact] * n)
    return SimpleNamespace(tried=tried, table=table)


def test_the_rule_picks_the_largest_rate_below_the_drift_bound_and_records_the_sweep(tmp_path, sweep):
    rec = real_lr.choose_lr(_ctx(tmp_path), SFTSpec(), steps=50, n_new=4, learned_at=0.95)
    assert rec["value"] == 3e-4 and rec["chosen_by"] == "rule" and rec["known_only_drift"] == 0.04
    assert sweep.tried == [1e-2, 3e-3, 1e-3, 3e-4]  # stops at the first that passes
    assert [r["lr"] for r in rec["sweep"]] == sweep.tried and rec["sweep"][-1]["new_learned"] == 1.0
    # a second call reads the stored sweep: nothing is trained again
    again = real_lr.choose_lr(_ctx(tmp_path), SFTSpec(), steps=50, n_new=4, learned_at=0.95)
    assert again == rec and len(sweep.tried) == 4


def test_the_rule_refuses_when_the_passing_rate_does_not_learn_or_none_passes(tmp_path, sweep):
    sweep.table["learned_below"] = 1e-4  # 3e-4 keeps drift low but learns only half
    with pytest.raises(LearningRateError, match=r"at lr 0.0003, the largest rate .* reach only 50% .*pass --lr"):
        real_lr.choose_lr(_ctx(tmp_path), SFTSpec(), steps=50, n_new=4, learned_at=0.95)
    sweep.table["drift"] = {lr: 0.3 for lr in CANDIDATES}
    with pytest.raises(LearningRateError, match="every learning rate .* at least 5%"):
        real_lr.choose_lr(_ctx(tmp_path / "b"), SFTSpec(), steps=60, n_new=4, learned_at=0.95)


def test_a_given_rate_skips_the_sweep_but_is_refused_when_it_destroys_the_model(tmp_path, sweep):
    rec = real_lr.choose_lr(_ctx(tmp_path), SFTSpec(), steps=50, n_new=4, learned_at=0.95, given=1e-3)
    assert rec["value"] == 1e-3 and rec["chosen_by"] == "--lr" and sweep.tried == [1e-3]
    assert rec["known_only_drift"] == 0.2  # measured and recorded, accepted (below DESTROYED)
    with pytest.raises(LearningRateError, match=r"at --lr 0.01 .* loses 90% .* destroyed before any arm runs"):
        real_lr.choose_lr(_ctx(tmp_path), SFTSpec(), steps=50, n_new=4, learned_at=0.95, given=1e-2)


def test_a_grid_whose_arm_forgot_half_the_watched_facts_is_refused():
    real_lr.refuse_destroyed_arms({"known": 0.02, "unknown": DESTROYED - 0.01, "idk": float("nan")}, 1e-4)
    with pytest.raises(LearningRateError, match=r"the idk arm answers 97% .* wrongly, so the model was destroyed and no "
                                                r"verdict is read"):
        real_lr.refuse_destroyed_arms({"known": 0.02, "idk": 0.97, "unknown": 0.6}, 1e-2)
