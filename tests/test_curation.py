"""From forecast to action: the forecast CLI writes culprits, an exclude list and a replay list;
``finetune`` trains on exactly the curated set and names the run by it, while configs that do
not curate keep their hash; bad curation input is one sentence and exit 2."""
from __future__ import annotations

import json

import pytest


def test_uncurated_configs_keep_their_dict_and_hash():
    from interference.train import FinetuneConfig
    from interference.runs import run_name
    plain = FinetuneConfig.quick()
    assert "exclude" not in plain.to_dict() and "replay_facts" not in plain.to_dict()
    assert run_name(FinetuneConfig.quick(exclude=[], replay_facts=[])) == run_name(plain)  # empty = no curation
    cur = FinetuneConfig.quick(exclude=["1:born_in"])
    assert cur.to_dict()["exclude"] == ["1:born_in"] and run_name(cur) != run_name(plain)
    assert FinetuneConfig.from_dict(cur.to_dict()) == cur
    with pytest.raises(ValueError, match="list of fact ids"):
        FinetuneConfig.quick(exclude="1:born_in")


@pytest.fixture(scope="module")
def plain_and_forecast(ft_config, tmp_path_factory):
    from interference.forecast.cli import main
    from interference.train import finetune
    root = tmp_path_factory.mktemp("curation")
    plain = finetune(ft_config(steps=4), root / "plain", progress=False)
    fc = root / "fc"
    assert main(["--sft-data", str(plain.out / "sft_data.json"), "--out", str(fc), "--culprits", "2",
                 "--top", "3", "--budget", "0.125"]) == 0  # 2 of 16 SFT facts
    return plain, fc, root


def test_forecast_writes_culprits_exclude_and_replay(plain_and_forecast):
    plain, fc, _ = plain_and_forecast
    sft = json.loads((plain.out / "sft_data.json").read_text())
    cul = json.loads((fc / "culprits.json").read_text())
    assert [r["rank"] for r in cul["rows"]] == [1, 2, 3]
    assert all(r["fact_id"] in sft["eval_sets"]["stability"] for r in cul["rows"])
    for r in cul["rows"]:
        scores = [c["score"] for c in r["culprits"]]
        assert len(scores) <= 2 and scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
        assert all(c["fact_id"] in sft["train"] for c in r["culprits"])
    exc = json.loads((fc / "exclude.json").read_text())
    assert exc["budget"] == 2 and 1 <= len(exc["exclude"]) <= 2 and set(exc["exclude"]) <= set(sft["train"])
    # the top at-risk fact's first culprit is dropped first
    assert exc["exclude"][0] == cul["rows"][0]["culprits"][0]["fact_id"]
    rep = json.loads((fc / "replay.json").read_text())
    assert rep["replay"] == [r["fact_id"] for r in cul["rows"]][:2]


def _cli_args(ft_base_dir, out):
    return ["--method", "sft", "--out", str(out), "--base-dir", ft_base_dir, "--n-facts", "16", "--n-task", "4",
            "--n-stability", "16", "--steps", "4", "--batch-size", "8", "--eval-every", "2", "--lr", "1e-3",
            "--no-progress"]


def test_curated_finetune_trains_on_exactly_the_remaining_facts(plain_and_forecast, ft_base_dir, capsys):
    from interference.finetune import main
    from interference.runs import run_name
    from interference.train import load_run
    plain, fc, root = plain_and_forecast
    out = root / "curated"
    assert main(_cli_args(ft_base_dir, out) + ["--exclude", str(fc / "exclude.json"),
                                              "--replay-facts", str(fc / "replay.json")]) == 0
    before = json.loads((plain.out / "sft_data.json").read_text())
    after = json.loads((out / "sft_data.json").read_text())
    drop = json.loads((fc / "exclude.json").read_text())["exclude"]
    replay = json.loads((fc / "replay.json").read_text())["replay"]
    assert after["train"] == [i for i in before["train"] if i not in drop] + replay
    assert after["excluded"] == drop and after["replayed"] == replay
    assert after["eval_sets"]["plasticity"] == [i for i in before["eval_sets"]["plasticity"] if i not in drop]
    assert after["eval_sets"]["stability"] == before["eval_sets"]["stability"]  # replayed facts still read
    rec = load_run(out)
    assert rec.metrics["n_train"] == len(after["train"])
    assert rec.config.exclude == drop and rec.config.replay_facts == replay
    assert [f.fact_id for f in rec.world_and_data()[1].train] == after["train"]  # rebuilt the same
    assert run_name(rec.config) != run_name(plain.config)
    assert "exclude" not in json.loads((plain.out / "config.json").read_text())


@pytest.mark.parametrize("content,msg", [("[1, 2]", "holds no list of fact ids"), ("nope", "is not JSON"),
                                         ('["999999:born_in"]', "is not in this SFT set")])
def test_bad_exclude_file_is_one_sentence(content, msg, ft_base_dir, tmp_path, capsys):
    from interference.finetune import main
    f = tmp_path / "exclude.json"
    f.write_text(content)
    out = tmp_path / "run"
    assert main(_cli_args(ft_base_dir, out) + ["--exclude", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and len(err.strip().splitlines()) == 1
    assert not (out / "config.json").exists()  # nothing written


def test_forecast_cli_refuses_bad_culprit_flags(plain_and_forecast, tmp_path, capsys):
    from interference.forecast.cli import main
    plain, _, _ = plain_and_forecast
    for extra, msg in ((["--culprits", "0"], "--culprits must be"), (["--culprits", "2", "--budget", "2"], "--budget"),
                       (["--budget", "0.1"], "give --culprits K too")):
        with pytest.raises(SystemExit) as e:
            main(["--sft-data", str(plain.out), "--out", str(tmp_path / "x")] + extra)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
