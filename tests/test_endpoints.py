"""Endpoint statistics on constructed cases with known answers, and the capacity / behavior-cloning
summaries on constructed runs: formulas, both read-outs, and cells found by key, not position."""
from __future__ import annotations

import math
import random

import pytest

from interference.hypotheses import arms, behavior_cloning as bc, capacity as cap
from interference.hypotheses.grid import Cell, ResultSet
from interference.metrics.endpoints import outcome_rates, pooled_persistence, share_of_reference, slope_per_doubling
from interference.metrics.matched import first_crossing
from interference.records import FactOutcomes, encode_outcomes, positional_ids


def rec(codes: str, n: int | None = None) -> FactOutcomes:
    return FactOutcomes.from_codes(positional_ids(n or len(codes)), codes)


def test_outcome_rates_count_among_base_known_facts_only():
    base, now = "ccccwwcc", "chacchaw"  # 6 base-known: c h a c . . a w  -> now c,h,a,c,a,w
    r = outcome_rates(rec(base), rec(now))
    assert r["n_known"] == 6
    assert r["forgetting"] == pytest.approx(4 / 6) and r["hallucination"] == pytest.approx(1 / 6)
    assert r["abstention"] == pytest.approx(2 / 6)
    assert math.isnan(outcome_rates(rec("ww"), rec("cc"))["forgetting"])
    with pytest.raises(ValueError, match="different facts"):
        outcome_rates(rec("ccc"), rec("cc"))
    assert encode_outcomes(["correct", "abstain", "hallucination", "wrong"]) == "cahw"
    assert rec("cahw").to_codes() == "cahw"
    with pytest.raises(ValueError, match="unknown outcome"):
        encode_outcomes(["maybe"])
    with pytest.raises(ValueError, match="unknown outcome code"):
        rec("cx")


def test_pooled_persistence_is_a_ratio_of_sums():
    # cell A: excess 0.3 plain, 0.1 joint; cell B: excess 0.5 plain, 0.0 joint -> 0.1 / 0.8
    assert pooled_persistence([0.2, 0.1], [0.4, 0.6], [0.1, 0.1]) == pytest.approx(0.125)
    assert pooled_persistence([0.4], [0.4], [0.0]) == pytest.approx(1.0)  # nothing rehearsed away
    assert math.isnan(pooled_persistence([0.1], [0.05], [0.05]))  # plain SFT caused no excess
    # excesses that cancel to float residue are no excess (a real count sweep read P = -1.1e16 here)
    assert math.isnan(pooled_persistence([0.1, 0.1], [0.1, 0.2], [0.3, 0.0]))  # excesses sum to 2.8e-17
    with pytest.raises(ValueError):
        pooled_persistence([0.1], [0.2, 0.3], [0.0])


def test_share_of_reference_and_slopes():
    assert share_of_reference(0.12, 0.02, 0.22) == pytest.approx(0.5)
    assert math.isnan(share_of_reference(0.1, 0.2, 0.2))
    assert slope_per_doubling([25, 50, 100, 200], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.1)
    assert math.isnan(slope_per_doubling([50, 50], [0.1, 0.3]))
    hist = [{"step": s, "plasticity": v} for s, v in ((0, 1.0), (10, 0.5), (20, 0.96), (30, 0.99))]
    assert first_crossing(hist, 0.95)["step"] == 20  # step 0 never counts, even at 1.0
    assert first_crossing(hist[:2], 0.95) is None


def _run(watch_end: str, n: int = 10, learned=((50, 0.5), (100, 0.97), (150, 1.0)), mid: str | None = None) -> dict:
    """A constructed arm: base knows the first n facts; at the end the watch codes are ``watch_end``."""
    base = "c" * n
    curve = [{"step": 0, "plasticity": math.nan, "watch": base, "never_seen": "w" * 4}]
    for step, p in learned:
        curve.append({"step": step, "plasticity": p, "watch": mid if (mid and step == 100) else watch_end,
                      "never_seen": "hhww"})
    return {"steps": learned[-1][0], "n_train": 8, "watch_hash": "x", "curve": curve}


def _codes(n_h: int, n_w: int = 0, n: int = 10) -> str:
    return "h" * n_h + "w" * n_w + "c" * (n - n_h - n_w)


def test_readout_gives_step_and_learning_matched_points():
    r = arms.readout(_run(_codes(4), mid=_codes(2)), 0.95)
    assert r["end"]["step"] == 150 and r["end"]["forgetting"] == pytest.approx(0.4)
    assert r["learned"]["step"] == 100 and r["learned"]["forgetting"] == pytest.approx(0.2) and r["learned"]["reached"]
    never = arms.readout(_run(_codes(1), learned=((50, 0.3), (100, 0.5))), 0.95)
    assert not never["learned"]["reached"] and never["learned"]["step"] == 100


class _Ctx:
    def __init__(self):
        from interference.bases import BaseSpec
        from interference.world import World
        self.spec = BaseSpec.default(quick=True)
        self.world = World(self.spec.world)


def _shuffled(pairs, seed=0):
    pairs = list(pairs)
    random.Random(seed).shuffle(pairs)
    cells = [Cell("t", k, lambda: {}) for k, _ in pairs]
    return ResultSet(cells, [r for _, r in pairs])


CAPACITY_CFG = cap.CapacityConfig(seeds=3, counts=(5, 15), sizes=(("d32", 32), ("d64", 64)))


def _capacity_pairs(sft_wrong, joint_wrong) -> list:
    """Constructed capacity cells (key, run) for every seed, size, arm and count of CAPACITY_CFG:
    the drift arm gets 1 of 10 wrong, ``sft_wrong(seed, count)`` and ``joint_wrong(seed, count)``
    say how many of the 10 watched facts the other two arms get wrong."""
    pairs = []
    for seed in range(CAPACITY_CFG.seeds):
        for size, _ in CAPACITY_CFG.sizes:
            base = {"level": "default", "size": size, "seed": seed}
            pairs.append(({**base, "arm": "drift", "count": max(CAPACITY_CFG.counts)}, _run(_codes(1))))
            for count in CAPACITY_CFG.counts:
                pairs.append(({**base, "arm": "sft", "count": count}, _run(_codes(sft_wrong(seed, count)))))
                pairs.append(({**base, "arm": "joint", "count": count}, _run(_codes(joint_wrong(seed, count)))))
    return pairs


def test_capacity_endpoint_pools_every_cell_whatever_the_order():
    cfg = CAPACITY_CFG
    # per seed: sft forgets 4 + s/10 (cells at count 5) or 6 (count 15) of 10; joint 2 or 1; drift 1
    pairs = _capacity_pairs(lambda seed, count: (4 + (seed == 2)) if count == 5 else 6,
                            lambda seed, count: 2 if count == 5 else 1)
    v1 = cap.summarize(cfg, _shuffled(pairs, 1), _Ctx())
    v2 = cap.summarize(cfg, _shuffled(pairs, 2), _Ctx())
    assert v1["per_seed"] == v2["per_seed"]
    # seed 0: (0.1 + 0.0) * 2 sizes / (0.3 + 0.5) * 2 = 0.125; seed 2: 0.1 / 0.9
    assert v1["per_seed"][0]["P"] == pytest.approx(0.125)
    assert v1["per_seed"][2]["P"] == pytest.approx(0.2 / 1.8)
    assert v1["per_seed"][0]["persistence_default_d32_n5"] == pytest.approx(1 / 3)
    assert v1["per_seed"][0]["slope_count"] == pytest.approx((0.5 - 0.3) / math.log2(3))
    assert v1["per_seed"][0]["slope_width"] == pytest.approx(0.0)
    assert v1["endpoint"]["value"] == pytest.approx((0.125 + 0.125 + 0.2 / 1.8) / 3)
    assert v1["verdict"] == cap.PREREGISTERED.decide(v1["endpoint"], checks_pass=True)
    with pytest.raises(KeyError):
        cap.summarize(cfg, _shuffled(pairs[1:]), _Ctx())  # a missing cell is refused, never shifted


def test_behavior_cloning_endpoint_and_idk_check(tmp_path):
    cfg = bc.BehaviorCloningConfig.quick()
    cfg = type(cfg)(**{**cfg.__dict__, "seeds": 3})
    pairs = []
    for seed in range(3):
        # H: unknown 3/10 (+seed), known 1/10, reference 5/10, idk 1/10, small 2/10
        for arm, nh in (("unknown", 3), ("known", 1), ("reference", 5), ("idk", 1), ("unknown_small", 2)):
            pairs.append(({"level": "default", "seed": seed, "arm": arm}, _run(_codes(nh + (arm == "reference") * seed))))
    v = bc.summarize(cfg, _shuffled(pairs, 3), _Ctx())
    assert v["per_seed"][0]["S"] == pytest.approx((0.3 - 0.1) / (0.5 - 0.1))
    assert v["per_seed"][2]["S"] == pytest.approx(0.2 / 0.6)
    assert v["per_seed"][1]["idk_lowering"] == pytest.approx(0.2)
    assert v["per_seed"][1]["count_scaling"] == pytest.approx(0.1)
    assert v["per_seed"][0]["never_seen_confident_unknown"] == pytest.approx(0.5)
    assert all(v["checks"].values())
    assert v["verdict"] == bc.PREREGISTERED.decide(v["endpoint"], checks_pass=True)
    from interference import plots
    assert all(p.stat().st_size > 0 for p in plots.plot_hypothesis(v, tmp_path))
    # if relabelling does not lower the rise, a positive verdict cannot stand
    no_idk = [(k, _run(_codes(3)) if k["arm"] == "idk" else r) for k, r in pairs]
    v2 = bc.summarize(cfg, _shuffled(no_idk), _Ctx())
    assert not all(v2["checks"].values()) and v2["verdict"] in ("inconclusive", "not_supported")


def test_behavior_cloning_refuses_overlapping_relations():
    from interference.world import World, WorldConfig
    w = World(WorldConfig())
    bad = bc.BehaviorCloningConfig(watched_relations=("born_in",), new_relations=("lives_in",))  # both cities
    with pytest.raises(bc.BehaviorCloningConfigError, match="value kind"):
        bc.check_relations(bad, w)
    bc.check_relations(bc.BehaviorCloningConfig(), w)


def test_behavior_cloning_arms_share_nothing_with_the_watched_facts():
    from interference.world import IDK_ANSWER, World, WorldConfig
    w = World(WorldConfig())
    cfg = bc.BehaviorCloningConfig()
    watch = bc.watched(w, cfg)
    pieces = {p for f in watch for p in f.subject.split()}
    values = {f.answer for f in watch}
    unk = bc.arm_facts(w, cfg, "unknown", 0)
    for arm in ("unknown", "known", "idk", "unknown_small"):
        facts = bc.arm_facts(w, cfg, arm, 0)
        assert facts and all(f.relation in cfg.new_relations for f in facts)
        assert not ({p for f in facts for p in f.subject.split()} & pieces)
        assert not ({f.answer for f in facts} & values)
    idk = bc.arm_facts(w, cfg, "idk", 0)
    assert [f.prompt for f in idk] == [f.prompt for f in unk] and {f.answer for f in idk} == {IDK_ANSWER}
    assert len(bc.arm_facts(w, cfg, "known", 0)) == len(unk) == len(bc.arm_facts(w, cfg, "reference", 0))
    small = bc.arm_facts(w, cfg, "unknown_small", 0)
    assert {f.fact_id for f in small} <= {f.fact_id for f in unk}


def test_idk_relabelling_is_scored_as_abstention():
    from interference.evaluate import outcome_of
    from interference.sft_data import SFTDataConfig, SFTDataError, relabel_idk
    from interference.world import IDK_ANSWER, World, WorldConfig
    w = World(WorldConfig.quick())
    facts = w.facts(w.split("unseen")[:3])
    idk = relabel_idk(facts)
    assert [(f.fact_id, f.prompt) for f in idk] == [(f.fact_id, f.prompt) for f in facts]
    assert {f.answer for f in idk} == {IDK_ANSWER}
    assert outcome_of(False, IDK_ANSWER, 0.99) == "abstain"  # never a confident wrong answer
    assert outcome_of(False, "city_3", 0.99) == "hallucination"
    with pytest.raises(SFTDataError, match="unknown_answer"):
        SFTDataConfig(unknown_answer="maybe")


def _capacity_verdict():
    pairs = _capacity_pairs(lambda seed, count: 4 + seed, lambda seed, count: 2)
    return cap.summarize(CAPACITY_CFG, _shuffled(pairs), _Ctx())


def test_figures_and_readme_render_from_constructed_verdicts(tmp_path, monkeypatch):
    import importlib.util
    import json
    from pathlib import Path
    from interference import plots
    v = _capacity_verdict()
    v["preregistered"] = cap.PREREGISTERED.record()
    paths = plots.plot_hypothesis(v, tmp_path / "capacity")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    spec = importlib.util.spec_from_file_location("hr", Path(__file__).parents[1] / "analyses" / "hypothesis_readme.py")
    hr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hr)
    monkeypatch.setattr(hr, "VERDICTS", tmp_path / "verdicts")
    runs = tmp_path / "runs"
    (runs / "capacity").mkdir(parents=True)
    (runs / "capacity" / "verdict.json").write_text(json.dumps(v))
    held = {**v, "verdict": "not_supported" if v["verdict"] != "not_supported" else "contributes"}
    (tmp_path / "held" / "capacity").mkdir(parents=True)
    (tmp_path / "held" / "capacity" / "verdict.json").write_text(json.dumps(held))
    out = tmp_path / "h.md"
    assert hr.main(["--runs", str(runs), "--heldout-runs", str(tmp_path / "held"), "--out", str(out)]) == 0
    text = out.read_text()
    assert (tmp_path / "verdicts" / "default" / "capacity.json").exists()
    assert cap.PREREGISTERED.hash() in text and "the verdict flips" in text
    assert f"**`{v['verdict']}`**" in text and "Not run yet" in text  # the other two have no verdict
    assert cap.PREREGISTERED.predictions["localized"] in text


def test_readme_says_where_a_verdict_differs_from_the_paper_and_why():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("hr2", Path(__file__).parents[1] / "analyses" / "hypothesis_readme.py")
    hr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hr)
    est = lambda x, lo, hi: {"value": x, "low": lo, "high": hi, "n": 5, "level": 0.95}  # noqa: E731
    agree = hr.paper_comparison("behavior_cloning", {"verdict": "not_supported", "headline": []})
    assert agree.startswith("Ours agrees")
    head = [[hr.PATCH_OWN, est(0.12, 0.09, 0.15)], [hr.PATCH_CONTROL, est(0.16, 0.10, 0.23)],
            ["share2 excess share of target forgetting", est(0.6, 0.41, 0.79)]]
    differ = hr.paper_comparison("localized", {"verdict": "contributes", "headline": head})
    assert differ.startswith("Ours differs") and "0.600 [0.410, 0.790]" in differ
    assert "does not single out" in differ  # own state restores no more than a control's
    head[0] = [hr.PATCH_OWN, est(0.40, 0.35, 0.45)]  # own state clearly above the control: no caveat
    assert "does not single out" not in hr.paper_comparison("localized", {"verdict": "main_driver", "headline": head})
