"""aimed_replay: the recovery shares on constructed seeds with known answers, the nested replay
lists, and the quick CLI run writing its verdict and figure."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from interference.hypotheses import aimed_replay as A
from interference.hypotheses.culprits import Plan


def _plan(n_watch=40, n_train=40):
    from interference.data import Fact
    facts = [Fact(fact_id=f"w{i}", subject=f"s{i}", relation="r", answer="a", prompt="q") for i in range(n_watch)]
    train = [Fact(fact_id=f"t{i}", subject=f"u{i}", relation="r", answer="a", prompt="q") for i in range(n_train)]
    risk = np.linspace(0, 1, n_watch)  # the last watched fact is the most at risk
    fragility = np.linspace(1, 0, n_watch)  # the first is the most fragile
    return Plan(train, {f"t{i}" for i in range(0, n_train, 2)}, facts, risk, [], [], {"culprits": ["t0", "t1"]}, {},
                2, neg_gold_logprob=fragility, seconds=1.0)


def test_replay_lists_follow_their_order_and_nest_across_budgets():
    cfg = A.AimedReplayConfig(budgets=(0.05, 0.1))
    p = _plan()
    rep = A.replayed(cfg, p, seed=0)
    assert rep["replay_targeted_0.05"] == [39, 38]  # 5% of 40 = 2, highest risk first
    assert rep["replay_fragile_0.05"] == [0, 1]
    assert rep["replay_targeted_0.1"][:2] == rep["replay_targeted_0.05"]
    assert rep["replay_random_0.1"][:2] == rep["replay_random_0.05"]
    assert rep["replay_random_0.05"] == A.replayed(cfg, p, seed=0)["replay_random_0.05"]
    drift = A.arm_train(cfg, p, 0, "drift")
    assert {f.fact_id for f in drift}.isdisjoint(p.new_ids) and len(drift) == 20
    assert len(A.arm_train(cfg, p, 0, "replay_targeted_0.1")) == 44


def test_recovery_is_the_share_of_the_excess_a_ratio_of_seed_means():
    cfg = A.AimedReplayConfig(budgets=(0.05,))
    # excess F_full - F_drift = 0.10 and 0.06; targeted removes 0.06 and 0.02 of it; random 0.01 and 0.01.
    rows = [{"F_full": 0.12, "F_drift": 0.02, "F_replay_targeted_0.05": 0.06, "F_replay_random_0.05": 0.11,
             "F_replay_fragile_0.05": 0.10, "F_self_distill": 0.12},
            {"F_full": 0.08, "F_drift": 0.02, "F_replay_targeted_0.05": 0.06, "F_replay_random_0.05": 0.07,
             "F_replay_fragile_0.05": 0.07, "F_self_distill": 0.02}]
    rec = A.recoveries(cfg, rows)
    assert rec["replay_targeted_0.05"]["value"] == pytest.approx(0.08 / 0.16)
    assert rec["replay_random_0.05"]["value"] == pytest.approx(0.02 / 0.16)
    assert rec["self_distill"]["value"] == pytest.approx(0.06 / 0.16)
    assert rec["replay_targeted_0.05"]["n"] == 2 and math.isfinite(rec["replay_targeted_0.05"]["low"])
    # no excess: no share to speak of
    flat = [{**r, "F_drift": r["F_full"]} for r in rows]
    assert math.isnan(A.recoveries(cfg, flat)["replay_targeted_0.05"]["value"])


def test_drift_is_read_at_the_step_where_full_learned():
    res = {"curve": [{"step": 0, "watch": "cc", "new": ""}, {"step": 25, "watch": "cw", "new": ""},
                     {"step": 50, "watch": "ww", "new": ""}]}
    assert A.read_at(res, 25)["codes"] == "cw"
    assert A.read_at(res, 999)["codes"] == "ww"  # no such step: the last one


def test_quick_cli_writes_verdict_and_figure(tmp_path):
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "interference.run_hypothesis", "aimed_replay", "--quick", "--seeds", "2",
                        "--no-progress", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    v = json.loads((out / "aimed_replay" / "verdict.json").read_text())
    assert v["hypothesis"] == "aimed_replay" and v["verdict"] in ("main_driver", "contributes", "not_supported",
                                                                  "inconclusive")
    assert set(v["series"]["arms"]) >= {"full", "drift", "self_distill", "replay_fragile_0.05"}
    assert (out / "aimed_replay" / "aimed_replay.png").exists()
    assert all(s["curation_new_dropped"] >= 0 for s in v["per_seed"])
