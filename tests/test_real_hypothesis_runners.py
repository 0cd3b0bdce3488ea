"""behavior_cloning and localized end to end on the committed model that knows facts. Apart from
test_real_models.py so the two slowest real-model tests (about 170 s together) go to their own worker
under --dist loadfile instead of queueing behind that file's other tests."""
import json

import pytest

from interference.data import load_qa_records

import real_fixtures as rf

HYP = rf.HYP_ARGS


@pytest.fixture(autouse=True)
def _private_cache(cache_dir):  # SliCK tables and teachers go to the session's private cache
    yield


@pytest.mark.parametrize("name", ["behavior_cloning", "localized"])
def test_hypothesis_runners_run_end_to_end_on_a_real_model(tmp_path, capsys, name):
    """Each runner: SliCK on the real data, fictitious entities from the model's tokenizer, a few
    steps per arm, and the module's own pre-registered summary and verdict. behavior_cloning runs
    on the majority-answer model (word-level names), localized on the fixture that knows facts
    (BPE names whose first pieces are specific to their subject); ``--lr`` skips the sweep."""
    from interference import run_hypothesis
    from interference.fictitious import name_pieces
    from interference.hypotheses import behavior_cloning, localized
    from interference.hypotheses.prereg import VERDICTS
    from interference.models import load_hf_tokenizer
    from interference.bases import BaseSpec
    module = {"behavior_cloning": behavior_cloning, "localized": localized}[name]
    model, data = rf.KNOWING / "model", rf.knowing_data_subset(60, 8)
    # a given rate: on the remade fixture (target-specific name pieces) the rule's rate for this 60-fact cut's
    # 40-step budget (1e-3) let the reference arm answer 70% of the watched facts wrongly, which the destroyed
    # check refuses; the rule itself is tested on a constructed sweep (test_real_lr) and by the refusals above
    lr = ["--lr", "3e-4"]
    out = tmp_path / "h"
    rc = run_hypothesis.main([name, "--model", str(model), "--data", str(data), "--out", str(out), *HYP, *lr])
    assert rc == 0, capsys.readouterr().err
    v = json.loads((out / name / "verdict.json").read_text())
    assert v["hypothesis"] == name and v["verdict"] in VERDICTS and v["seeds"] == 2
    assert v["preregistered"] == json.loads(json.dumps(module.PREREGISTERED.record()))
    assert v["base_hash"] not in {BaseSpec.default().hash(), BaseSpec.default(quick=True).hash()}
    rate = v["learning_rate"]
    assert rate["chosen_by"] == "--lr" and v["config"]["sft"]["lr"] == rate["value"] == 3e-4
    assert len(rate["sweep"]) == 1  # a given rate: only its Known-only drift is measured
    assert 0 <= v["known_only_drift"] < 0.5
    base = json.loads((out / name / "config.json").read_text())["base"]
    assert base["precision"] == "fp32" and base["real"]["model"] == str(model.resolve())
    cells = [json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))]
    assert all(c["key"]["prereg"] == module.PREREGISTERED.hash() and c["key"]["base"] == v["base_hash"] for c in cells)
    real_names = {r.fact.subject for r in load_qa_records(data)}
    if name == "behavior_cloning":
        assert len(cells) == 2 * 5 and v["cells"]["computed"] == 10
        # the kept relation the model knows best is watched; the others (other answers) are new
        rels = {"P17", "P19", "P106", "P264"}
        assert len(v["config"]["watched_relations"]) == 1 and set(v["config"]["new_relations"]) == \
            rels - set(v["config"]["watched_relations"])
        for c in cells:
            assert c["result"]["steps"] == 40 and c["result"]["curve"][0]["step"] == 0
        assert all(v["statistics"][f"plasticity_{a}"]["n"] == 2 for a in ("unknown", "reference"))
    else:
        tok = load_hf_tokenizer(model)
        real_pieces = {i for n in real_names for i in name_pieces(tok, n)}
        results = {(c["result"]["arm"], c["result"].get("seed")): c["result"] for c in cells}
        assert len(cells) == 1 + 2 * (4 + 1)  # base; per seed the core arms and the Known-only drift reference
        drift = v["known_only_drift_matched"]
        for row in drift["per_seed"]:  # read at the step the seed's share2 arm was read at equal learning
            assert row["matched_step"] == results[("share2", row["seed"])]["reads"]["learned"]["step"]
            assert 0 <= row["matched"] <= 1 and row["final_step"] == 40
        assert drift["final"]["n"] == 2
        for seed in (0, 1):
            targets = results[("share2", seed)]["target_eids"]
            assert len(targets) == v["config"]["n_targets"] >= 8
            assert all(len(name_pieces(tok, t)) >= 3 for t in targets)
            for arm, kept in (("share0", 0), ("share1_first", 1), ("share2", 2)):
                names = results[(arm, seed)]["new_names"]
                assert not set(names) & real_names
                built_on = results[(arm, seed)]["new_name_targets"]
                assert sorted(built_on) == sorted(targets)
                for n, t in zip(names, built_on):  # exactly the target's first `kept` pieces, in place
                    a, b = name_pieces(tok, n), name_pieces(tok, t)
                    assert len(a) == len(b) and [x == y for x, y in zip(a, b)] == [k < kept for k in range(len(b))]
            uuid = results[("uuid", seed)]["new_names"]
            assert all(" " not in n and not set(name_pieces(tok, n)) & real_pieces for n in uuid)
        assert v["statistics"]["learned/share2/learned"]["n"] == 2  # the dose arms reached 95% and were read
    assert (out / name / f"{name}.png").exists()
