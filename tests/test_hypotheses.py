"""Hypothesis runners: the verdict rule on constructed statistics, each hypothesis end to end in
--quick mode (sharing the session's tiny base), reuse of finished cells, and bad input."""
from __future__ import annotations

import json
import math

import pytest
import torch

from interference.hypotheses.grid import Cell, run_grid
from interference.hypotheses.prereg import decide
from interference.metrics.stats import estimate
from interference.run_hypothesis import HYPOTHESES, main


# ------------------------------------------------------------------ the verdict rule
@pytest.mark.parametrize("mean, ci, expected", [
    (0.8, (0.65, 0.95), "main_driver"),      # dominant effect
    (0.15, (0.08, 0.22), "contributes"),     # small but clear
    (0.1, (-0.2, 0.4), "inconclusive"),      # CI straddles zero
    (0.02, (-0.03, 0.07), "not_supported"),  # confidently negligible
    (-0.3, (-0.5, -0.1), "not_supported"),   # the opposite of the prediction
    (0.6, (0.3, 0.9), "contributes"),        # large but not surely over half
])
def test_decide_on_synthetic_statistics(mean, ci, expected):
    assert decide(mean, ci, n_seeds=5) == expected


def test_decide_needs_two_seeds_finite_ci_and_passing_checks():
    assert decide(0.8, (0.7, 0.9), n_seeds=1) == "inconclusive"
    assert decide(0.8, (-math.inf, math.inf), n_seeds=3) == "inconclusive"
    assert decide(0.8, (0.7, 0.9), n_seeds=3, checks_pass=False) == "inconclusive"
    assert decide(0.01, (0.0, 0.05), n_seeds=3, checks_pass=False) == "not_supported"


def test_estimate_is_a_t_interval_over_seeds_ignoring_nan():
    e = estimate([0.2, 0.4, float("nan")])
    assert e["n"] == 2 and e["value"] == pytest.approx(0.3)
    assert e["low"] < 0.2 and e["high"] > 0.4
    assert estimate([])["n"] == 0


def test_grid_reuses_stored_cells(tmp_path):
    calls = []
    cells = [Cell("toy", {"i": i}, (lambda i=i: calls.append(i) or {"x": i * i})) for i in range(3)]
    first = run_grid(cells, tmp_path, progress=False)
    assert [r["x"] for r in first.results] == [0, 1, 4] and first.computed == 3
    again = run_grid(cells, tmp_path, progress=False)
    assert again.reused == 3 and again.computed == 0 and calls == [0, 1, 2]
    (tmp_path / cells[1].file).write_text("{broken")  # a damaged cell is recomputed, not trusted
    assert run_grid(cells, tmp_path, progress=False).computed == 1


# ------------------------------------------------------------------ end to end, --quick
@pytest.fixture(scope="module")
def quick_all(quick_base, tmp_path_factory):
    """`all --quick` once for the module (the quick base comes from the session cache)."""
    out = tmp_path_factory.mktemp("hyp")
    threads = torch.get_num_threads()
    try:
        rc = main(["all", "--quick", "--seeds", "2", "--out", str(out), "--no-progress", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return out


@pytest.mark.parametrize("name", sorted(HYPOTHESES))
def test_quick_run_writes_a_well_formed_verdict(quick_all, name):
    d = quick_all / name
    v = json.loads((d / "verdict.json").read_text())
    assert v["hypothesis"] == name
    assert v["verdict"] in ("main_driver", "contributes", "not_supported", "inconclusive")
    assert set(v["share"]) >= {"value", "low", "high", "n"} and v["share"]["n"] == 2
    assert isinstance(v["rule"], str) and v["preregistered"]["rule"] == v["rule"]
    assert set(v["preregistered"]["predictions"]) == {"capacity", "behavior_cloning", "localized"}
    assert v["statistics"] and all("value" in e for e in v["statistics"].values() if isinstance(e, dict))
    assert len(v["per_seed"]) == 2 and json.loads((d / "per_seed.json").read_text()) == v["per_seed"]
    for ext in ("png", "pdf"):
        assert (d / f"{name}.{ext}").stat().st_size > 0


def test_all_writes_summary(quick_all):
    s = json.loads((quick_all / "summary.json").read_text())
    assert set(s) == set(HYPOTHESES) and all("verdict" in v and "share" in v for v in s.values())
    assert (quick_all / "summary.png").exists() and (quick_all / "summary.pdf").exists()


def test_quick_localized_reports_the_mended_patching(quick_all):
    """The quick world's localized verdict carries the mended patching readings (every layer from
    the embedding output, three position sets, two controls) beside the original ones, and draws
    their figure; the quick world decides nothing, so only their presence is checked."""
    v = json.loads((quick_all / "localized" / "verdict.json").read_text())
    st, info = v["statistics"], v["patching"]
    layers = info["layers"]
    assert len(layers) >= 3 and layers == ["embed", *[f"L{i}" for i in range(len(layers) - 1)]]
    assert "patch/share2/targets/own/L1" in st  # the original reading, under its original key
    for pos in ("subject", "shared", "subject_last"):
        for donor in ("own", "control", "mean", "own_minus_control", "own_minus_mean"):
            assert all(f"patch/share2/targets/{pos}/{donor}/{x}" in st for x in layers), (pos, donor)
    assert not any(k.startswith("patch/uuid/all/shared/") for k in st)
    assert "shared" in info["arms"]["uuid"]["not_applicable"]
    assert (quick_all / "localized" / "localized_patching.png").stat().st_size > 0


def test_rerun_reuses_finished_work(quick_all):
    cells = sorted((quick_all / "cells").glob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in cells}
    threads = torch.get_num_threads()
    try:
        assert main(["localized", "--quick", "--seeds", "2", "--out", str(quick_all), "--no-progress",
                     "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    v = json.loads((quick_all / "localized" / "verdict.json").read_text())
    assert v["cells"]["computed"] == 0 and v["cells"]["reused"] > 0
    assert {p: p.stat().st_mtime_ns for p in cells} == before


# ------------------------------------------------------------------ bad input
def test_unknown_hypothesis_lists_valid_ones(tmp_path, capsys):
    assert main(["capacty", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(n in err for n in ("capacity", "behavior_cloning", "localized", "all"))
    assert not (tmp_path / "o").exists()


def test_zero_seeds_is_refused(tmp_path, capsys):
    assert main(["localized", "--seeds", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--seeds" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_incompatible_output_dir_is_refused_untouched(quick_all, capsys):
    cfg = quick_all / "localized" / "config.json"
    before = (cfg.read_bytes(), cfg.stat().st_mtime_ns)
    assert main(["localized", "--out", str(quick_all), "--no-progress"]) == 2  # default world vs quick
    err = capsys.readouterr().err
    assert "different" in err and err.strip().count("\n") == 0
    assert (cfg.read_bytes(), cfg.stat().st_mtime_ns) == before


def test_consolidations_flag_sets_the_axis_where_a_hypothesis_has_one_and_rejects_nonsense():
    from interference import run_hypothesis as rh
    from interference.hypotheses import behavior_cloning, capacity, localized
    UsageError = rh.UsageError
    assert rh._levels("0.5, 2") == (0.5, 2.0)
    for bad in ("0", "-1", "x", "nan", ","):
        with pytest.raises(UsageError, match="--consolidations"):
            rh._levels(bad)
    assert rh._config(capacity, True, 2, (0.5,)).consolidations == (0.5,)
    assert rh._config(behavior_cloning, True, None, (0.5, 2.0)).consolidations == (0.5, 2.0)
    with pytest.raises(UsageError, match="--consolidations applies to"):  # no axis: refused, not ignored
        rh._config(localized, True, None, (0.5,))
    assert rh._config(capacity, True, None).consolidations == ()
