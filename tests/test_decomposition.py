"""The decomposition's shares and words on constructed cells whose answers are known by design.

Why: the decomposition is the one place the three hypotheses are compared in one unit, so each
share must come out exactly as its definition says (same denominator, ratio of seed means), the
common rule must give ``main_driver`` to one share only, and each required check must bite.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from interference.hypotheses import decomposition as dec
from interference.hypotheses.grid import Cell, ResultSet
from interference.metrics.stats import ratio_estimate

N = 1000  # watched facts, all known to the base


def curve(forget_end: float, *, steps=(0, 50, 100), plasticity=1.0, forget_path=None) -> dict:
    """A stored arm whose watched forgetting is ``forget_path`` at ``steps`` (default: 0, then the end value)."""
    path = forget_path or [0.0] + [forget_end] * (len(steps) - 1)
    rows = [{"step": s, "plasticity": 0.0 if s == 0 else plasticity,
             "watch": "w" * round(f * N) + "c" * (N - round(f * N))} for s, f in zip(steps, path)]
    return {"steps": steps[-1], "n_train": 10, "watch_hash": "x", "extra_hash": {}, "curve": rows}


def small_cfg(seeds: int, width: int = 64):
    """Arms of 100 steps (evaluated at 0, 50, 100) and a long replay of 200."""
    from interference.train import SFTSpec
    return dec.DecompositionConfig(seeds=seeds, widths=(width,), sd_widths=(), replay_factor=2,
                                   sft=SFTSpec(max_steps=100, eval_every=50))


def grid(F_by_seed: list[dict], width: int = 64, cfg=None, **arm_kw):
    cfg = cfg or small_cfg(len(F_by_seed), width)
    cells, results = [], []
    for seed, F in enumerate(F_by_seed):
        for arm in dec._arms_at(cfg, width):
            cells.append(Cell(f"decomp-{arm}", {"width": width, "seed": seed, "arm": arm}, lambda: {}))
            if arm == "replay":  # a long run, settled at the end unless told otherwise
                results.append(arm_kw.get("replay") or curve(F[arm], steps=(0, 50, 100, 150, 200)))
            else:
                results.append(curve(F[arm], plasticity=arm_kw.get("plasticity", {}).get(arm, 1.0)))
    return cfg, ResultSet(cells, results)


def F(sem, uuid, replay, drift, sem_known, idk_known):
    return dict(sem=sem, uuid=uuid, replay=replay, drift=drift, sem_known=sem_known, idk_known=idk_known)


def test_ratio_estimate_is_the_ratio_of_means_with_a_t_interval():
    num, den = [0.02, 0.04, 0.03], [0.04, 0.06, 0.05]
    e = ratio_estimate(num, den)
    assert e["value"] == pytest.approx(0.6)  # 0.03 / 0.05, not the mean of ratios 0.611
    d = np.array(num) - 0.6 * np.array(den)
    half = 4.302652729911275 * d.std(ddof=1) / (math.sqrt(3) * 0.05)  # t(0.975, 2)
    assert (e["low"], e["high"]) == pytest.approx((0.6 - half, 0.6 + half))
    assert math.isnan(ratio_estimate([0.1, 0.2], [-0.01, 0.0])["value"])  # no excess: no share


def test_shares_of_one_excess_come_out_as_constructed():
    # E = 0.10 every seed; localized explains 0.07 of it, capacity 0.01, behavior cloning 0.02
    seeds = [F(0.15, 0.08, 0.06, 0.05, 0.12, 0.10), F(0.16, 0.09, 0.07, 0.06, 0.13, 0.11),
             F(0.14, 0.07, 0.05, 0.04, 0.11, 0.09)]
    cfg, res = grid(seeds)
    v = dec.summarize(cfg, res, SimpleNamespace())
    sh = v["series"]["by_width"]["64"]["shares"]
    assert sh["E"]["value"] == pytest.approx(0.10, abs=1e-9)
    assert sh["L"]["value"] == pytest.approx(0.7, abs=1e-9)
    assert sh["C"]["value"] == pytest.approx(0.1, abs=1e-9)
    assert sh["B"]["value"] == pytest.approx(0.2, abs=1e-9)
    words = v["verdicts"]["64"]["step_matched"]
    assert words["localized"] == "main_driver"  # identical excess each seed: a tight interval at 0.7
    assert words["behavior_cloning"] == "contributes"
    assert v["verdict"] == "main driver at d64: localized"


def test_only_the_largest_share_is_main_driver():
    shares = {"L": {"value": 0.8, "low": 0.6, "high": 1.0, "n": 5}, "C": {"value": 0.7, "low": 0.55, "high": 0.85, "n": 5},
              "B": {"value": 0.05, "low": 0.0, "high": 0.09, "n": 5}}
    w = dec.words(shares, {"excess": True, "learned": True, "replay_settled": True})
    assert w == {"localized": "main_driver", "capacity": "contributes", "behavior_cloning": "not_supported"}


def test_no_excess_makes_every_positive_word_inconclusive():
    seeds = [F(0.05, 0.04, 0.05, 0.05, 0.05, 0.05), F(0.04, 0.04, 0.04, 0.05, 0.04, 0.04),
             F(0.06, 0.05, 0.06, 0.05, 0.06, 0.06)]
    cfg, res = grid(seeds)
    v = dec.summarize(cfg, res, SimpleNamespace())
    assert not v["checks"]["d64 excess"]
    assert all(w in ("inconclusive", "not_supported") for w in v["verdicts"]["64"]["step_matched"].values())


def test_an_arm_that_did_not_learn_fails_the_check():
    seeds = [F(0.15, 0.08, 0.06, 0.05, 0.12, 0.10), F(0.16, 0.09, 0.07, 0.06, 0.13, 0.11)]
    cfg, res = grid(seeds, plasticity={"uuid": 0.5})
    v = dec.summarize(cfg, res, SimpleNamespace())
    assert not v["checks"]["d64 learned"]
    assert v["verdicts"]["64"]["step_matched"]["localized"] != "main_driver"


def test_a_replay_run_still_recovering_makes_capacity_inconclusive():
    # capacity's share is large, but the long replay was still falling over its last quarter
    seeds = [F(0.15, 0.14, 0.12, 0.05, 0.14, 0.14), F(0.16, 0.15, 0.13, 0.06, 0.15, 0.15)]
    falling = [curve(0, steps=(0, 50, 100, 150, 200), forget_path=[0, 0.2, 0.17, 0.15, f["replay"]]) for f in seeds]
    cfg = small_cfg(2)
    cells, results = [], []
    for seed, f in enumerate(seeds):
        for arm in dec._arms_at(cfg, 64):
            cells.append(Cell(f"decomp-{arm}", {"width": 64, "seed": seed, "arm": arm}, lambda: {}))
            results.append(falling[seed] if arm == "replay" else curve(f[arm]))
    v = dec.summarize(cfg, ResultSet(cells, results), SimpleNamespace())
    assert v["series"]["by_width"]["64"]["replay_recovery_last_quarter"] == pytest.approx(0.025, abs=1e-9)  # 0.15 at step 150 -> 0.12, 0.13
    assert not v["checks"]["d64 replay_settled"]
    assert v["verdicts"]["64"]["step_matched"]["capacity"] == "inconclusive"


def test_sem_and_uuid_arms_teach_the_identical_facts_and_the_mixed_arms_differ_only_in_labels(quick_base):
    from interference.world import IDK_ANSWER
    world = quick_base[2]
    cfg = dec.DecompositionConfig.quick()
    sem, uuid = dec.arm_facts(world, cfg, "sem", 0), dec.arm_facts(world, cfg, "uuid", 0)
    assert [(f.relation, f.answer) for f in sem] == [(f.relation, f.answer) for f in uuid]
    assert not {f.subject for f in sem} & {f.subject for f in uuid}
    known, idk = dec.arm_facts(world, cfg, "sem_known", 0), dec.arm_facts(world, cfg, "idk_known", 0)
    assert [f.prompt for f in known] == [f.prompt for f in idk]
    changed = [(a.answer, b.answer) for a, b in zip(known, idk) if a.answer != b.answer]
    assert len(changed) == len(sem) and all(b == IDK_ANSWER for _, b in changed)
    assert len(known) == 2 * len(sem)


def test_bad_widths_are_refused_in_one_sentence_before_any_work(tmp_path, capsys):
    from interference.run_hypothesis import main
    for argv, want in ((["decomposition", "--widths", "64,abc"], "--widths"),
                       (["decomposition", "--widths", "66"], "multiples of 4"),
                       (["capacity", "--widths", "64"], "applies to decomposition")):
        rc = main(argv + ["--quick", "--out", str(tmp_path / "o"), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and want in err and err.strip().count("\n") == 0
    assert not (tmp_path / "o").exists()


def test_more_widths_extend_an_output_directory_instead_of_being_refused():
    from interference.bases import BaseSpec
    from interference.hypotheses.runner import hypothesis_config
    ctx = SimpleNamespace(spec=BaseSpec.default(quick=True))
    a = hypothesis_config(dec, dec.DecompositionConfig(widths=(64,), seeds=3), ctx)
    b = hypothesis_config(dec, dec.DecompositionConfig(widths=(64, 128), seeds=5), ctx)
    c = hypothesis_config(dec, dec.DecompositionConfig(widths=(64,), count=50), ctx)
    assert a == b and a != c  # widths and seeds add cells; the count changes every cell


def _same(x, y, path="") -> None:
    """Equal field for field: words and counts exactly, floats to 1e-9 relative (a slope over widths
    goes through a least-squares fit whose last bits follow the CPU's BLAS, not our code)."""
    import math
    if isinstance(x, dict) and isinstance(y, dict):
        assert set(x) == set(y), (path, set(x) ^ set(y))
        for k in x:
            _same(x[k], y[k], f"{path}.{k}")
    elif isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        assert len(x) == len(y), path
        for i, (a, b) in enumerate(zip(x, y)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(x, float) and isinstance(y, (int, float)) and not isinstance(y, bool):
        assert (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), (path, x, y)
    else:
        assert x == y, (path, x, y)


def _saved_halves():
    import json
    from pathlib import Path
    v = json.loads((Path(__file__).resolve().parents[1] / "analyses/results/decomposition/default.json").read_text())
    return v, (lambda w, seeds=None: dec.at_widths(v, {w}, seeds))


def test_joining_two_widths_recomputes_the_saved_verdict_exactly():
    """The saved verdict (widths run in separate runs, with their own seed counts), split by width
    and joined again one width at a time, is the same verdict."""
    import json
    from functools import reduce
    v, only = _saved_halves()
    j = reduce(dec.join_verdicts, [only(w) for w in v["series"]["widths"]])
    norm = lambda x: json.loads(json.dumps(x, sort_keys=True))  # noqa: E731
    for k in ("verdicts", "shares", "checks", "statistics", "headline"):
        _same(norm(j[k]), norm(v[k]), k)
    _same(norm(j["series"]["trend"]), norm(v["series"]["trend"]), "trend")


def test_a_width_with_fewer_seeds_counts_only_its_own_and_the_trend_only_complete_seeds():
    v, only = _saved_halves()
    n64 = v["seeds_by_width"]["64"]  # the saved verdict's own count (it grows as seeds are added)
    j = dec.join_verdicts(only(64), only(128, seeds=3))
    assert n64 > 3 and j["seeds_by_width"] == {"64": n64, "128": 3}
    assert j["series"]["by_width"]["128"]["shares"]["E"]["n"] == 3
    assert j["series"]["by_width"]["64"]["shares"]["E"]["n"] == n64
    assert all(t["n"] == 3 for t in j["series"]["trend"].values())


def test_joining_other_seeds_of_the_same_widths_recomputes_the_saved_verdict_exactly():
    """--first-seed runs: the saved verdict's first three seeds and its last two, run apart, joined
    by seed number, are the same verdict (so seeds 5-7 of the registered 8 can join seeds 0-4)."""
    import json
    v, only = _saved_halves()
    full = dec.at_widths(v, v["series"]["widths"])
    n = min(v["seeds_by_width"].values())
    full = {**full, "per_seed": full["per_seed"][:n], "seeds": n}
    first = {**full, "per_seed": full["per_seed"][:3], "seeds": 3}
    rest = {**full, "per_seed": full["per_seed"][3:], "seeds": n - 3}
    j = dec.join_verdicts(first, rest)
    whole = dec.join_verdicts(full, {**full, "per_seed": [], "seeds": 0, "series": {**full["series"], "widths": []}})
    norm = lambda x: json.loads(json.dumps(x, sort_keys=True))  # noqa: E731
    for k in ("verdicts", "shares", "checks", "statistics", "headline"):
        _same(norm(j[k]), norm(whole[k]), k)
    assert j["seeds_by_width"] == {str(w): n for w in v["series"]["widths"]}
    assert [r["seed"] for r in j["per_seed"]] == list(range(n))
    assert j["config"]["seed_numbers"] == list(range(n)) and j["config"]["first_seed"] == 0
    # seeds that are no range: the config lists them and names no first_seed + seeds range
    gap = dec.join_verdicts(first, {**rest, "per_seed": [{**r, "seed": r["seed"] + 20} for r in rest["per_seed"]]})
    assert gap["config"]["seed_numbers"] == [0, 1, 2] + [s + 20 for s in range(3, n)]
    assert gap["config"]["first_seed"] is None and gap["config"]["seeds"] == n
    with pytest.raises(ValueError, match=r"at seed\(s\) \[2\]"):
        dec.join_verdicts(first, {**rest, "per_seed": full["per_seed"][2:]})


def test_seed_range_starts_at_first_seed_and_cells_follow_it():
    from interference.hypotheses.grid import seed_range
    assert list(seed_range(dec.DecompositionConfig(seeds=3, first_seed=5))) == [5, 6, 7]
    assert list(seed_range(dec.DecompositionConfig(seeds=2))) == [0, 1]
    with pytest.raises(ValueError, match="first_seed"):
        dec.DecompositionConfig(first_seed=-1)


def test_join_refuses_a_shared_width_and_another_preregistration():
    import copy
    _, only = _saved_halves()
    with pytest.raises(ValueError, match="both verdicts hold width"):
        dec.join_verdicts(only(64), only(64))
    other = copy.deepcopy(only(128))
    other["preregistered"]["hash"] = "000000000000"
    with pytest.raises(ValueError, match="different pre-registrations"):
        dec.join_verdicts(only(64), other)


def test_a_consolidation_level_moves_every_width_onto_that_levels_bases():
    from types import SimpleNamespace
    from interference.bases import BaseSpec
    ctx = SimpleNamespace(spec=BaseSpec.default())
    cfg = dec.DecompositionConfig(consolidation=0.5)
    specs = {w: dec.base_at(ctx, cfg, w) for w in (64, 128)}
    assert all(s.pretrain.consolidation == 0.5 for s in specs.values())
    assert specs[64].model.d_model == 64 and specs[128].model.d_model == 128
    default = dec.base_at(ctx, dec.DecompositionConfig(), 64)
    assert default.pretrain.consolidation == ctx.spec.pretrain.consolidation and default.hash() != specs[64].hash()


def test_join_refuses_verdicts_of_two_consolidation_levels():
    import copy
    _, only = _saved_halves()
    other = copy.deepcopy(only(128))
    other["config"]["consolidation"] = 2.0
    with pytest.raises(ValueError, match="different consolidation levels"):
        dec.join_verdicts(only(64), other)


def test_the_consolidation_trend_is_zero_for_equal_levels_and_the_constructed_slope_otherwise():
    import copy
    v, _ = _saved_halves()
    d64 = dec.at_widths(v, {64})
    same = dec.consolidation_trend({0.5: d64, 1.0: d64, 2.0: d64})
    assert same["seeds"] == sorted(dec.seeds_at(d64, 64))
    assert all(abs(e["value"]) < 1e-12 for e in same["slope_per_doubling"].values())
    flat = copy.deepcopy(d64)  # at 2x, uuid keys forget as much as semantic names: L = 0 on every seed
    for r in flat["per_seed"]:
        r["F_uuid_d64"] = r["F_sem_d64"]
    t = dec.consolidation_trend({0.5: d64, 1.0: d64, 2.0: flat})
    L = [(r["F_sem_d64"] - r["F_uuid_d64"]) / (r["F_sem_d64"] - r["F_drift_d64"]) for r in d64["per_seed"]]
    # log2 levels -1, 0, 1 and shares L, L, 0: the least-squares slope is -L/2
    assert t["slope_per_doubling"]["localized"]["value"] == pytest.approx(-sum(L) / len(L) / 2, rel=1e-9)
    assert abs(t["slope_per_doubling"]["capacity"]["value"]) < 1e-12
    assert t["by_level"]["2.0"]["shares"]["L"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert t["by_level"]["1.0"]["words"] == same["by_level"]["1.0"]["words"]  # a level's words are its own
