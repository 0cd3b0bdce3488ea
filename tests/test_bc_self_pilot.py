"""The self-answer pilot (docs/bc_self_pilot.md): its reads on constructed rows with known
answers, the relabelling, and the instrument's movement read on the tiny base."""
import importlib.util
import math
from pathlib import Path

import pytest

from interference.data import Fact

_spec = importlib.util.spec_from_file_location("bc_self_pilot", Path(__file__).parents[1] / "analyses" / "bc_self_pilot.py")
pilot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pilot)


def _rows(F_sem, F_drift, F_self, D_sem, D_self, n=4):
    """Seeds whose reads wobble around the given values (a t-interval needs spread), drift's
    wobble carried into sem and self so the excess is exact per seed."""
    rows = []
    for s in range(n):
        e = 0.002 * (s - (n - 1) / 2)
        rows.append({"seed": s, "F_sem": F_sem + e, "F_drift": F_drift + e, "F_self": F_self + e + 0.1 * e,
                     "D_sem": D_sem, "D_self": D_self, "Fl_sem": F_sem, "Fl_drift": F_drift, "Fl_self": F_self + e,
                     "H_sem": F_sem, "H_drift": F_drift, "H_self": F_self + e})
    return rows


def test_reads_recover_the_constructed_shares():
    # excess 0.2, self's excess 0.05: G = 0.25; self moved a quarter as far: M = 0.25; per unit of
    # movement both arms do the same damage: R = 1
    r = pilot.pilot_reads(_rows(0.2, 0.0, 0.05, D_sem=10.0, D_self=2.5))
    assert r["G"]["value"] == pytest.approx(0.25, abs=1e-3)
    assert r["M"]["value"] == pytest.approx(0.25, abs=1e-9)
    assert r["R"]["value"] == pytest.approx(1.0, abs=1e-2)
    assert r["E"]["value"] == pytest.approx(0.2, abs=1e-9) and r["E"]["n"] == 4
    assert r["G_learned"]["value"] == pytest.approx(0.25, abs=1e-3)


def test_a_self_arm_that_forgets_nothing_beyond_drift_has_no_share():
    r = pilot.pilot_reads(_rows(0.2, 0.01, 0.01, D_sem=10.0, D_self=5.0))
    assert abs(r["G"]["value"]) < 0.01 and r["G"]["high"] < 0.1
    assert r["R"]["high"] < 0.5
    assert pilot.outcome(r).startswith("against behavior cloning")


def test_outcome_follows_the_doc_rule():
    est = lambda v, lo, hi: {"value": v, "low": lo, "high": hi, "n": 4}  # noqa: E731
    assert pilot.outcome({"G": est(0.8, 0.6, 1.0), "R": est(1.0, 0.8, 1.2)}).startswith("for behavior cloning")
    # a small G from a small movement, with damage per unit of movement like sem's: not "against"
    assert pilot.outcome({"G": est(0.05, 0.0, 0.09), "R": est(0.9, 0.4, 1.4)}) == "inconclusive at this pilot's seeds"
    assert pilot.outcome({"G": est(0.3, 0.1, 0.5), "R": est(0.2, 0.1, 0.3)}) == "inconclusive at this pilot's seeds"
    nan = {"value": math.nan, "low": None, "high": None, "n": 0}
    assert pilot.outcome({"G": nan, "R": nan}) == "inconclusive at this pilot's seeds"


def test_relabel_own_keeps_the_questions_and_refuses_a_count_mismatch():
    from interference.sft_data import relabel_own
    facts = [Fact(f"{i}:r", f"e{i}", "r", f"v{i}", f"Q: e{i} ? A:") for i in range(3)]
    out = relabel_own(facts, ["a", "b", "c"])
    assert [f.answer for f in out] == ["a", "b", "c"]
    assert [(f.fact_id, f.prompt, f.subject) for f in out] == [(f.fact_id, f.prompt, f.subject) for f in facts]
    with pytest.raises(ValueError, match="one answer per fact: got 2 answers for 3 facts"):
        relabel_own(facts, ["a", "b"])
    with pytest.raises(ValueError, match="empty answer"):
        relabel_own(facts, ["a", " ", "c"])


def test_self_targets_are_what_the_base_answers_and_movement_is_recorded(quick_base, quick_spec, tmp_path):
    """On the tiny base: the self set's answers are the base's greedy answers (so it starts fully
    'learned'); run_arm with movement records how far the weights went and the trained answers'
    probability at every evaluation; without it, neither key (older cells stay as they were)."""
    from interference.evaluate import accuracy, score_facts
    from interference.hypotheses.arms import fixed_steps, run_arm
    from interference.hypotheses.context import Context
    from interference.train import SFTSpec
    ctx = Context(quick_spec, tmp_path / "h", device="cpu", progress=False)
    world = ctx.world
    sem = world.facts(world.new_entities(4, "semantic", seed=40_000))
    model, tok = ctx.base()
    own, about = pilot.self_train(model, tok, sem)
    assert len(own) == len(sem) and accuracy(score_facts(model, tok, own)) == 1.0
    assert 0 <= about["share_true_answer"] <= 1 and 0 < about["mean_p_own_answer"] <= 1
    watch = world.facts(world.split("statement_only"))[:20]
    sft = fixed_steps(SFTSpec(max_steps=10, batch_size=8, eval_every=5, lr=1e-3), 10, 0)
    moved = run_arm(ctx, quick_spec, sem, watch, sft, movement=True)
    assert moved["update_norm"] > 0 and [r["step"] for r in moved["curve"]] == [0, 5, 10]
    assert all(0 < r["train_p"] <= 1 for r in moved["curve"])
    assert moved["curve"][-1]["train_p"] > moved["curve"][0]["train_p"]  # training raised the new answers
    plain = run_arm(ctx, quick_spec, sem, watch, sft)
    assert "update_norm" not in plain and all("train_p" not in r for r in plain["curve"])
    assert [r["watch"] for r in plain["curve"]] == [r["watch"] for r in moved["curve"]]  # the read changes nothing


@pytest.mark.parametrize("widths", ["64,x", "0", "66"])
def test_widths_flag_refuses_a_malformed_list_in_one_sentence(capsys, widths):
    """run_hypothesis' width rule: comma-separated positive multiples of the 4 heads."""
    with pytest.raises(SystemExit) as e:
        pilot.main(["--widths", widths])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--widths {widths!r} must be comma-separated widths" in err, err
