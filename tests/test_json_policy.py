"""Metrics over an empty set are written as `null` with their count, never as the token NaN, and
read back as missing (nan in memory, "n/a" in tables), never as a number."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from interference.io import atomic_write_json, json_line, number, read_checked_json, write_checked_json


def strict(text: str):
    """Parse as standard JSON: NaN / Infinity tokens are refused, as jq or JavaScript would."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_nan_is_written_as_null_and_read_back_as_missing(tmp_path):
    obj = {"rate": math.nan, "n": 0, "np": np.float32("nan"), "inf": -math.inf, "t": torch.tensor(float("nan")),
           "ok": np.float64(0.25), "nested": [(1, math.nan)], 3: "int key"}
    atomic_write_json(tmp_path / "a.json", obj)
    back = strict((tmp_path / "a.json").read_text())
    assert back == {"rate": None, "n": 0, "np": None, "inf": None, "t": None, "ok": 0.25, "nested": [[1, None]],
                    "3": "int key"}
    assert math.isnan(number(back["rate"])) and number(back["ok"]) == 0.25 and number(back["n"]) == 0.0
    assert strict(json_line({"gold_logprob": -math.inf})) == {"gold_logprob": None}
    # a checked file's digest is over what is on disk, so a result holding nan still verifies
    write_checked_json(tmp_path / "c.json", {"result": {"plasticity": math.nan}})
    payload, why = read_checked_json(tmp_path / "c.json")
    assert why == "" and payload["result"] == {"plasticity": None}


def test_known_only_run_writes_null_plasticity_with_its_count(ft_config, tmp_path):
    from interference.sft_data import SFTDataConfig
    from interference.train import finetune, load_run
    cfg = ft_config(data=SFTDataConfig(n_facts=16, n_task=4, n_stability=16, unknown_fraction=0.0))
    rec = finetune(cfg, tmp_path / "run", progress=False)
    assert rec.world_and_data()[1].eval_sets["plasticity"] == []  # no new facts: nothing to be plastic on
    saved = strict((tmp_path / "run" / "metrics.json").read_text())
    assert saved["plasticity_accuracy"] == {"final": None, "peak": None, "n": 0}
    assert saved["stability_accuracy"]["n"] == 16 and 0 <= saved["stability_accuracy"]["final"] <= 1
    assert all(h["plasticity"] is None for h in saved["history"])
    for line in (tmp_path / "run" / "timeline.jsonl").read_text().splitlines():
        strict(line)
    again = load_run(tmp_path / "run").metrics  # read back: missing, as the run had it in memory
    assert math.isnan(again["plasticity_accuracy"]["final"]) and math.isnan(rec.metrics["plasticity_accuracy"]["final"])
    assert all(math.isnan(h["plasticity"]) for h in again["history"])
    assert again["stability_accuracy"] == rec.metrics["stability_accuracy"]


def test_an_endpoint_with_no_seeds_is_null_on_disk_and_n_a_in_tables(tmp_path):
    import importlib.util
    from pathlib import Path
    from interference.figures.inputs import fmt
    from interference.metrics.stats import estimate, format_estimate
    from interference.io import atomic_write_json as write_json
    e = estimate([math.nan, None])  # every seed's value missing
    write_json(tmp_path / "verdict.json", {"endpoint": e})
    back = strict((tmp_path / "verdict.json").read_text())["endpoint"]
    assert back["value"] is None and back["n"] == 0
    assert format_estimate(back) == format_estimate(e) == fmt(back) == fmt(e) == "n/a"
    assert format_estimate(estimate([0.2, 0.4])).startswith("0.300 [")
    spec = importlib.util.spec_from_file_location("mm", Path(__file__).parents[1] / "analyses" / "methods_matched.py")
    mm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mm)
    assert mm._f(back) == "n/a" and mm._f(mm._est([0.5])) == "0.500"
    with pytest.raises(ValueError):  # what slips past the cleaning is refused, never written as NaN
        json.dumps({"x": math.nan}, allow_nan=False)
