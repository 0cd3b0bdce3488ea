"""Logit lens, the figures' run cache, and FactReport on the tiny world."""
from __future__ import annotations

import pytest
import torch

from interference.figures.runs import Arm, RunCache, RunSettings, load_param_path

SHORT = RunSettings(epochs=2, eval_every=2)  # 4 steps on the quick world: seconds


def test_logit_lens_last_layer_is_the_models_output():
    from interference.lens import lens_logits
    from interference.models import ModelConfig, build_model, model_logits
    torch.manual_seed(0)
    model = build_model(ModelConfig.quick(), vocab_size=40, device="cpu").eval()
    ids = torch.randint(0, 40, (3, 7))
    with torch.no_grad():
        lens = lens_logits(model, ids)
        out = model_logits(model, ids)
    assert lens.shape == (2, 3, 7, 40)
    torch.testing.assert_close(lens[-1].double(), out.double(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(lens[0], out, atol=1e-3)  # an earlier layer reads something else


def test_logit_lens_gold_logprob_matches_scoring(quick_base):
    from interference.evaluate import score_facts
    from interference.lens import logit_lens
    model, tok, world, _ = quick_base
    facts = [f for f in world.facts(world.split("pretrain_qa")[:3], template=0)]
    lens = logit_lens(model, tok, facts)
    scores = score_facts(model, tok, facts)
    assert lens.gold_logprob.shape == (len(facts), int(model.cfg.n_layers))
    for i, r in enumerate(scores):  # one-token answers: the last layer's lens is the scored log-prob
        assert float(lens.gold_logprob[i, -1]) == pytest.approx(r.gold_logprob, rel=1e-4, abs=1e-4)
        assert (lens.gold_rank[i, -1] == 0) == (lens.top_token[i][-1] == r.prediction)


@pytest.fixture(scope="module")
def cached_runs(quick_base, tmp_path_factory):
    cache = RunCache(tmp_path_factory.mktemp("fig_runs"), quick=True)
    runs = {a.label: cache.get(a, 0, SHORT) for a in (Arm("sft"), Arm("self_distill", "self_distill"))}
    return cache, runs


def test_run_cache_reuses_a_finished_run_and_keeps_snapshots(cached_runs):
    from interference.models import load_model
    from interference.train import base_dir_of
    cache, runs = cached_runs
    trained = cache.trained
    again = cache.get(Arm("sft (other label)"), 0, SHORT)  # same config under another label
    assert cache.trained == trained and again.out == runs["sft"].out
    steps, deltas = load_param_path(runs["sft"].out)
    assert steps[0] == 0 and steps[-1] == runs["sft"].metrics["steps"]
    assert float(deltas[0].abs().max()) == 0.0
    flat = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    end = flat(runs["sft"].load_model()[0]) - flat(load_model(base_dir_of(runs["sft"].config))[0])
    torch.testing.assert_close(deltas[-1], end, rtol=2e-3, atol=1e-5)  # float16 snapshot of the real update
    assert (runs["sft"].out / "probes" / "index.json").exists()


def test_fact_report_by_id_and_by_name(cached_runs):
    from interference.report import FactNotFound, fact_report
    _, runs = cached_runs
    _, data = runs["sft"].world_and_data()
    fact = data.eval_sets["stability"][0]
    rep = fact_report(fact.fact_id, runs, forecast_dir=None)
    assert rep.fact == fact and rep.eval_set == "stability" and rep.slick["category"] == "HighlyKnown"
    n_layers = int(runs["sft"].config.base["model"]["n_layers"])
    assert set(rep.lens) == {"base", "sft", "self_distill"} and all(len(v) == n_layers for v in rep.lens.values())
    assert [r["step"] for r in rep.timeline["sft"]] == [h["step"] for h in runs["sft"].metrics["history"]]
    assert all(n["relation"] == fact.relation for n in rep.neighbours)
    assert [n["cosine"] for n in rep.neighbours] == sorted((n["cosine"] for n in rep.neighbours), reverse=True)
    assert rep.forecast is not None  # a reason when no forecast ran, never an exception
    chk = rep.forecast_check
    assert chk["method"] == "sft" and ("missing" in chk) != ("risk" in chk)
    if "risk" in chk:  # the outcome beside the forecast is the sft run's own
        assert chk["risk"] == rep.forecast["risk"]
        assert chk["forgotten"] == (rep.final["sft"]["forgotten"] if rep.timeline["sft"][0]["correct"] else None)
    by_name = fact_report(fact.subject.upper(), runs, relation=fact.relation, revert=False, forecast_dir=None)
    assert by_name.fact == fact
    with pytest.raises(FactNotFound, match="no fact with id or entity name"):
        fact_report("no such entity", runs)


def test_parallel_training_fills_the_cache_once(quick_base, tmp_path):
    from interference.figures.runs import train_missing
    cache = RunCache(tmp_path, quick=True)
    runs = [(a, s, SHORT) for a in (Arm("sft"), Arm("sft again")) for s in (0, 1)]  # the same two runs asked twice
    train_missing(runs, cache, jobs=2)
    assert cache.trained == 2 and all(cache.is_cached(Arm("sft"), s, SHORT) for s in (0, 1))
    train_missing(runs, cache, jobs=2)
    assert cache.trained == 2  # nothing left to train


def test_cli_builds_a_figure_and_reuses_everything_on_a_rerun(quick_base, tmp_path, capsys):
    import json

    from interference.figures.__main__ import main
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "curves.json").write_text(json.dumps({"arms": [{"label": "sft", "method": "sft"}], "seeds": 2,
                                                 "quick": {"run": {"epochs": 2, "eval_every": 2}}}))
    argv = ["--quick", "--only", "curves", "--configs", str(cfg), "--out", str(tmp_path / "out"),
            "--runs", str(tmp_path / "runs"), "--no-progress"]
    assert main(argv) == 0
    assert "runs: 2 trained, 0 reused" in capsys.readouterr().out
    for f in ("curves.png", "curves.pdf", "data/curves.json"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "data" / "curves.json").read_text())["data"]
    assert saved["arms"]["sft"]["steps"] == [0, 2, 4] and saved["seeds"] == 2
    assert main(argv) == 0  # same config: the saved data is drawn again, no run is even opened
    assert "runs: 0 trained, 0 reused" in capsys.readouterr().out
    assert main(argv + ["--recompute"]) == 0  # recomputing reads the cached runs, trains nothing
    assert "runs: 0 trained, 2 reused" in capsys.readouterr().out


def test_forecast_vs_outcome_names_hits_misses_and_false_alarms():
    from interference.report import AT_RISK_PERCENTILE, forecast_vs_outcome
    top, low = {"risk": 0.4, "percentile": AT_RISK_PERCENTILE}, {"risk": 0.01, "percentile": 12.0}
    assert forecast_vs_outcome(top, True, 0.05, 40)["outcome"] == "hit"
    assert forecast_vs_outcome(top, False, 0.05, 40)["outcome"] == "false alarm"
    assert forecast_vs_outcome(low, True, 0.05, 40)["outcome"] == "miss"
    c = forecast_vs_outcome(low, False, 0.05, 40)
    assert c["outcome"] == "correct rejection" and not c["at_risk"] and "0.050 of 40" in c["text"]
    assert "not scored" in forecast_vs_outcome(top, None, 0.05, 40)["outcome"]  # the base never knew it
    assert forecast_vs_outcome({"missing": "no combiner"}, True, 0.05, 40) == {"method": "sft", "missing": "no combiner"}
    assert "n/a" in forecast_vs_outcome(top, None, float("nan"), 0)["text"]  # no known watched facts: no rate
