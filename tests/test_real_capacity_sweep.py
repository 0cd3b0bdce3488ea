"""capacity's count sweep end to end on the committed model that knows facts; its own file for the
same reason as test_real_hypothesis_runners.py (about 80 s on one worker)."""
import json

import pytest

import real_fixtures as rf

HYP = rf.HYP_ARGS


@pytest.fixture(autouse=True)
def _private_cache(cache_dir):  # SliCK tables and teachers go to the session's private cache
    yield


def test_capacity_runs_as_a_count_sweep_on_one_real_model(tmp_path, capsys):
    """capacity on a real model: sft, joint (Known facts replayed) and Known-only drift per count
    of uuid entities, each count trained its epochs (steps grow with the count), the sweep's own
    pre-registration in verdict.json and every cell key."""
    from interference import run_hypothesis
    from interference.hypotheses import capacity_sweep as cs
    from interference.hypotheses.prereg import VERDICTS
    model, data = rf.KNOWING / "model", rf.knowing_data_subset(60, 8)
    out = tmp_path / "h"
    rc = run_hypothesis.main(["capacity", "--model", str(model), "--data", str(data), "--out", str(out), *HYP,
                              "--lr", "3e-4", "--counts", "2,6"])
    assert rc == 0, capsys.readouterr().err
    v = json.loads((out / "capacity" / "verdict.json").read_text())
    assert v["design"] == "count_sweep" and v["verdict"] in VERDICTS and v["seeds"] == 2
    assert v["preregistered"] == json.loads(json.dumps(cs.PREREGISTERED.record()))
    assert v["config"]["counts"] == [2, 6] and v["learning_rate"]["value"] == 3e-4
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    assert len(cells) == 2 * 2 * 3 and all(c["key"]["prereg"] == cs.PREREGISTERED.hash() for c in cells)
    n_rel = v["series"]["relations"]
    steps = {(c["key"]["arm"], c["key"]["count"]): c["result"]["steps"] for c in cells}
    for count in (2, 6):  # the three runs of a count take the same steps, those the count's epochs need
        assert steps[("sft", count)] == steps[("joint", count)] == steps[("drift", count)] == \
            cs.steps_for(cs.SweepConfig.quick(), count * n_rel)
    assert steps[("sft", 6)] > steps[("sft", 2)]
    sft = [c for c in cells if c["key"]["arm"] == "sft" and c["key"]["count"] == 6]
    assert all(c["result"]["n_train"] == 6 * n_rel for c in sft)
    s = v["statistics"]
    for count in (2, 6):
        assert s[f"forgetting_sft_n{count}"]["n"] == 2 and 0 <= s[f"plasticity_sft_n{count}"]["value"] <= 1
    assert set(v["series"]["sweep"]) == {"2", "6"}
