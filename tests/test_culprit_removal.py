"""The culprit-removal design (hypotheses/culprits.py): its pre-registration is complete, its
read-outs give known answers on constructed outcome codes, and on the quick base its plan
removes exactly the budget, aimed as registered (the targets' top culprits; random; fragility)."""
from __future__ import annotations

import math

import pytest

from interference.hypotheses import EXPERIMENTS, HYPOTHESES
from interference.hypotheses import culprits as H


def test_registered_by_name_not_in_all():
    assert EXPERIMENTS["culprits"] is H and "culprits" not in HYPOTHESES
    assert set(H.PREREGISTERED.predictions) == {"capacity", "behavior_cloning", "localized"}
    assert H.PREREGISTERED.main_at == 0.25 and H.PREREGISTERED.negligible_below == 0.05


def test_rescue_counts_only_facts_the_base_knew_and_full_sft_forgot():
    full = {"base": "cccca", "codes": "cwwwa"}  # facts 1-3 forgotten; 4 never known
    arm = {"codes": "wcwca"}
    assert H.rescue(full, arm, [0, 1, 2, 3, 4]) == (pytest.approx(2 / 3), 3)
    r, n = H.rescue(full, arm, [0, 4])
    assert math.isnan(r) and n == 0


def test_read_is_learning_matched_with_the_last_step_as_fallback():
    res = {"curve": [{"step": 0, "watch": "cc", "new": "ww"}, {"step": 10, "watch": "cw", "new": "cw"},
                     {"step": 20, "watch": "ww", "new": "cc"}, {"step": 30, "watch": "wc", "new": "cc"}]}
    r = H.read(res, 0.95)
    assert (r["step"], r["codes"], r["reached"], r["base"]) == (20, "ww", True, "cc")
    assert H.read(res, 0.95, matched=False)["step"] == 30
    never = H.read(res, 1.01)
    assert never["step"] == 30 and not never["reached"]
    assert H.forgetting_among({"base": "ccw", "codes": "wcw"}, [0, 1, 2]) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def quick_plan(quick_base, tmp_path_factory):
    from interference.bases import BaseSpec
    from interference.hypotheses.context import Context
    ctx = Context(BaseSpec.default(quick=True), tmp_path_factory.mktemp("h"), device="cpu", progress=False)
    cfg = H.CulpritsConfig.quick()
    return cfg, ctx, H.plan(cfg, ctx, 0)


def test_quick_plan_removes_the_budget_as_registered(quick_plan, one_thread):
    cfg, ctx, p = quick_plan
    ids = [f.fact_id for f in p.train]
    assert p.n_budget == round(cfg.budget * len(p.train))
    for arm in H.REMOVAL_ARMS:
        assert len(p.removed[arm]) <= p.n_budget and set(p.removed[arm]) <= set(ids)
        assert [f.fact_id for f in H.arm_train(p, arm)] == [i for i in ids if i not in set(p.removed[arm])]
    assert len(p.removed["random"]) == p.n_budget
    assert not set(p.targets) & set(p.kept) and abs(len(p.targets) - len(p.kept)) <= 1
    # the most at-risk target's best culprit goes first, and the culprits are the targets'
    from interference.forecast.culprits import culprits
    model, tok = ctx.base()
    c, _ = culprits(model, tok, [p.watch[i] for i in p.targets], p.train, k=cfg.k)
    assert p.removed["culprits"][0] == c.of(p.watch[p.targets[0]].fact_id)[0][0]
    rep = H.arm_train(p, "replay_targeted")
    assert len(rep) == len(p.train) + p.n_budget and {f.fact_id for f in rep[len(p.train):]} <= {f.fact_id for f in p.watch}
    assert H.plan(cfg, ctx, 0) is p  # one plan per seed, shared by cells and summary


def _result(base: str, end: str, new_n: int) -> dict:
    """A constructed arm curve: base codes at step 0, ``end`` from step 10 on, new facts learned at 10."""
    return {"curve": [{"step": 0, "watch": base, "new": "w" * new_n},
                      {"step": 10, "watch": end, "new": "c" * new_n},
                      {"step": 20, "watch": end, "new": "c" * new_n}]}


def test_summary_on_constructed_arms_where_culprit_removal_saves_every_target(quick_plan):
    import dataclasses
    from interference.hypotheses.grid import Cell, ResultSet
    cfg, ctx, _ = quick_plan
    cfg = dataclasses.replace(cfg, seeds=2)
    cells, results = [], []
    for seed in range(2):
        p = H.plan(cfg, ctx, seed)
        n = len(p.watch)
        base = "c" * n
        lost = set(p.targets) | set(p.kept)  # full SFT forgets every at-risk fact
        full = "".join("w" if i in lost else "c" for i in range(n))
        saved = "".join("w" if i in p.kept else "c" for i in range(n))  # culprit removal saves T only
        ends = {"full": full, "culprits": saved, "random": full, "fragility": full,
                "replay_targeted": base, "replay_random": full}
        for arm in H.ARMS:
            cells.append(Cell("x", {"seed": seed, "arm": arm}, lambda: None))
            results.append(_result(base, ends[arm], 3))
    v = H.summarize(cfg, ResultSet(cells, results), ctx)
    s = v["statistics"]
    assert s["rescue_culprits_targets"]["value"] == 1 and s["rescue_random_targets"]["value"] == 0
    assert s["rescue_culprits_kept"]["value"] == 0 and s["E"]["value"] == 1
    assert s["rescue_replay_targeted_at_risk"]["value"] == 1
    assert s["collateral_culprits"]["value"] == 0
    assert v["verdict"] == "main_driver" and v["goal_met"]


def test_the_figure_draws_from_a_verdict_with_missing_numbers(tmp_path):
    from interference.plots import plot_hypothesis
    est = {"value": 0.5, "low": 0.1, "high": 0.9, "n": 3}
    v = {"hypothesis": "culprits", "verdict": "inconclusive", "share": est,
         "statistics": {"rescue_culprits_targets": est, "rescue_random_targets": {"value": None, "low": None,
                                                                                 "high": None, "n": 0}}}
    paths = plot_hypothesis(v, tmp_path)
    assert [p.name for p in paths] == ["culprits.png", "culprits.pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_a_tiny_grid_runs_end_to_end_and_reuses_its_cells(quick_plan, one_thread):
    import dataclasses
    from interference.hypotheses.runner import run_module
    from interference.train import SFTSpec
    cfg, ctx, _ = quick_plan
    cfg = dataclasses.replace(cfg, seeds=2, sft=SFTSpec(max_steps=10, batch_size=16, eval_every=5, lr=1e-3))
    v = run_module(H, cfg, ctx)
    assert v["hypothesis"] == "culprits" and v["cells"]["computed"] == 2 * len(H.ARMS)
    assert v["verdict"] in ("main_driver", "contributes", "not_supported", "inconclusive")
    assert len(v["per_seed"]) == 2 and all(s["budget"] == 4 for s in v["per_seed"])
    assert (ctx.out / "culprits" / "verdict.json").exists()
    again = run_module(H, cfg, ctx)
    assert again["cells"]["computed"] == 0 and again["statistics"] == v["statistics"]
