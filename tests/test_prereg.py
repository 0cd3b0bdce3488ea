"""Pre-registration: validation, a hash of the text, refusal to reuse cells of another endpoint,
and results looked up by cell, never by position."""
from __future__ import annotations

import dataclasses
import json
import sys
import types

import pytest

from interference.hypotheses import prereg as common_prereg, runner
from interference.metrics.stats import estimate
from interference.hypotheses.grid import Cell, CellLookupError, ResultSet, run_grid
from interference.hypotheses.prereg import Preregistration, PreregistrationError, with_prereg

PRED = {"capacity": "rises with count", "behavior_cloning": "rises, IDK removes it", "localized": "no rise"}


def _prereg(**kw) -> Preregistration:
    return Preregistration(**{"endpoint": "E = a - b", "predictions": dict(PRED), "rule": "contributes if lo > 0",
                              **kw})


def test_predictions_must_name_exactly_the_three_hypotheses():
    with pytest.raises(PreregistrationError, match="exactly one per hypothesis"):
        _prereg(predictions={"capacity": "x", "localized": "y"})
    with pytest.raises(PreregistrationError, match="exactly one per hypothesis"):
        _prereg(predictions={**PRED, "other": "z"})
    with pytest.raises(PreregistrationError, match="non-empty"):
        _prereg(predictions={**PRED, "localized": " "})
    with pytest.raises(PreregistrationError, match="must not exceed"):
        _prereg(main_at=0.01, negligible_below=0.1)


def test_hash_is_of_the_text_and_moves_with_any_part():
    a = _prereg()
    assert a.hash() == _prereg(predictions=dict(reversed(list(PRED.items())))).hash()  # order-free
    assert len(a.hash()) == 12 and a.hash() in a.record()["hash"]
    assert "E = a - b" in a.text() and "- localized: no rise" in a.text()
    for changed in (_prereg(endpoint="E = b - a"), _prereg(rule="main if lo > 0"), _prereg(main_at=0.4),
                    _prereg(predictions={**PRED, "capacity": "flat"})):
        assert changed.hash() != a.hash()
    assert set(a.record()) >= {"endpoint", "predictions", "rule", "hash"}


def test_decide_uses_the_registered_thresholds():
    est = {"value": 0.03, "low": 0.02, "high": 0.04, "n": 5}
    assert _prereg(main_at=0.5, negligible_below=0.1).decide(est) == "not_supported"
    assert _prereg(main_at=0.02, negligible_below=0.005).decide(est) == "main_driver"
    assert _prereg(main_at=0.05, negligible_below=0.005).decide(est) == "contributes"


def test_results_are_found_by_cell_not_position(tmp_path):
    cells = [Cell("toy", {"arm": a, "seed": s}, (lambda a=a, s=s: {"v": f"{a}{s}"})) for a in "xy" for s in (0, 1)]
    res = ResultSet(cells, run_grid(cells, tmp_path, progress=False).results)
    shuffled = [cells[3], cells[0], cells[2], cells[1]]
    res2 = ResultSet(shuffled, run_grid(shuffled, tmp_path, progress=False).results)
    for a in "xy":
        for s in (0, 1):
            assert res.one(arm=a, seed=s)["v"] == res2.one(arm=a, seed=s)["v"] == f"{a}{s}"
    assert [r["v"] for r in res.matching(arm="y")] == ["y0", "y1"]
    with pytest.raises(CellLookupError, match="2 cells match"):
        res.one(arm="x")
    with pytest.raises(CellLookupError, match="0 cells match"):
        res.one(arm="z", seed=0)


def test_cells_of_another_endpoint_are_not_reused(tmp_path):
    calls = []
    cells = [Cell("toy", {"i": i}, (lambda i=i: calls.append(i) or {"x": i})) for i in range(2)]
    a, b = _prereg(), _prereg(endpoint="E = b - a")
    run_grid(with_prereg(cells, a.hash()), tmp_path, progress=False)
    assert run_grid(with_prereg(cells, a.hash()), tmp_path, progress=False).reused == 2
    rep = run_grid(with_prereg(cells, b.hash()), tmp_path, progress=False)
    assert rep.computed == 2 and calls == [0, 1, 0, 1]
    assert all(c.key["prereg"] == b.hash() for c in with_prereg(cells, b.hash()))


def _toy_module(prereg: Preregistration | None):
    m = types.ModuleType("toy_hypothesis")
    m.NAME = "toy"
    if prereg is not None:
        m.PREREGISTERED = prereg

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        seeds: int = 3

        def to_dict(self):
            return dataclasses.asdict(self)

    m.Cfg = Cfg
    m.cells = lambda cfg, ctx: [Cell("toy", {"seed": s}, (lambda s=s: {"e": 0.3 + 0.01 * s})) for s in range(cfg.seeds)]

    def summarize(cfg, results, ctx):
        per_seed = [{"seed": s, "e": results.one(seed=s)["e"]} for s in range(cfg.seeds)]
        est = estimate([p["e"] for p in per_seed])
        return {"hypothesis": "toy", "verdict": m.PREREGISTERED.decide(est), "endpoint": est, "share": est,
                "per_seed": per_seed, "statistics": {}, "rule": m.PREREGISTERED.rule}
    m.summarize = summarize
    return m


class _Ctx:
    def __init__(self, out):
        from interference.bases import BaseSpec
        self.spec, self.out, self.progress = BaseSpec.default(quick=True), out, False

    def cache(self):
        return self.out / "cells"

    def fingerprint(self, spec):  # toy cells depend on no base
        return "none"


def test_run_module_records_the_preregistration_and_refuses_another(tmp_path):
    from interference.io import RunDirError
    mod = _toy_module(_prereg())
    v = runner.run_module(mod, mod.Cfg(), _Ctx(tmp_path))
    stored = json.loads((tmp_path / "toy" / "verdict.json").read_text())
    assert stored["preregistered"] == _prereg().record() and v["verdict"] == "contributes"
    cell_files = list((tmp_path / "cells").glob("toy-*.json"))
    assert all(json.loads(p.read_text())["key"]["prereg"] == _prereg().hash() for p in cell_files)
    other = _toy_module(_prereg(endpoint="E = b - a"))
    with pytest.raises(RunDirError):  # the directory planned for one endpoint is not reused for another
        runner.run_module(other, other.Cfg(), _Ctx(tmp_path))
    with pytest.raises(PreregistrationError, match="PREREGISTERED"):
        runner.run_module(_toy_module(None), mod.Cfg(), _Ctx(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_every_hypothesis_module_is_preregistered():
    from interference.run_hypothesis import HYPOTHESES
    for name, module in HYPOTHESES.items():
        p = common_prereg.preregistration_of(module)
        assert set(p.predictions) == {"capacity", "behavior_cloning", "localized"}, name


def test_cli_refuses_an_output_dir_of_another_preregistration(tmp_path, capsys, monkeypatch):
    from interference import run_hypothesis as rh
    from interference.hypotheses.runner import hypothesis_config
    mod = _toy_module(_prereg())
    ctx = _Ctx(tmp_path)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "config.json").write_text(json.dumps(hypothesis_config(mod, mod.Cfg(), ctx)))
    rh._check_compatible(tmp_path / "toy", hypothesis_config(mod, mod.Cfg(), ctx), "toy")  # same: accepted
    other = _toy_module(_prereg(rule="main if lo > 0.2"))
    with pytest.raises(rh.UsageError, match="pre-registration"):
        rh._check_compatible(tmp_path / "toy", hypothesis_config(other, other.Cfg(), ctx), "toy")


def test_cli_names_the_settings_an_old_output_dir_differs_in(tmp_path):
    """A directory made with other settings, or before a setting existed, is refused with the
    settings named (not a guess such as --quick), and nothing in it is touched."""
    from interference import run_hypothesis as rh
    from interference.hypotheses.runner import hypothesis_config
    mod = _toy_module(_prereg())
    ctx = _Ctx(tmp_path)
    old = hypothesis_config(mod, mod.Cfg(), ctx)
    old["config"] = {**old["config"], "steps": 60}
    old["config"].pop("first_seed", None)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "config.json").write_text(json.dumps(old))
    new = hypothesis_config(mod, mod.Cfg(), ctx)
    new["config"] = {**new["config"], "steps": 250, "first_seed": 0}
    with pytest.raises(rh.UsageError) as e:
        rh._check_compatible(tmp_path / "toy", new, "toy")
    msg = str(e.value)
    assert "first_seed absent there, 0 here" in msg and "steps 60 there, 250 here" in msg and "--quick" not in msg
    assert json.loads((tmp_path / "toy" / "config.json").read_text()) == json.loads(json.dumps(old))


def test_cells_computed_in_workers_are_reused_by_the_serial_pass(tmp_path):
    from interference.workers import WorkerError, run_in_workers
    cells = [Cell("toy", {"i": i}, (lambda i=i: {"x": i * i})) for i in range(5)]
    assert run_in_workers(cells, lambda part: run_grid(part, tmp_path, progress=False), jobs=2) == 2
    rep = run_grid(cells, tmp_path, progress=False)
    assert rep.reused == 5 and rep.computed == 0 and [r["x"] for r in rep.results] == [0, 1, 4, 9, 16]

    def boom(part):
        raise SystemExit(3)
    with pytest.raises(WorkerError, match="exit codes"):
        run_in_workers(cells, boom, jobs=2)
