"""The one loop: config round-trip, timeline shape, resume, re-run, run-dir guards, CLI errors."""
from __future__ import annotations

import json

import pytest
import torch

from interference.io import RunDirError
from interference.train import FinetuneConfig, finetune, load_run


def test_config_json_round_trip(ft_config):
    cfg = ft_config("freeze", method_options={"groups": "mlp:0-1"})
    again = FinetuneConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="unknown fine-tune config field"):
        FinetuneConfig.from_dict({**cfg.to_dict(), "stepz": 3})


class Recorder:
    def __init__(self):
        self.events = []

    def on_start(self, ctx):
        self.events.append(("start", ctx.step))

    def on_eval(self, ctx, step):
        assert ctx.model is not None and ctx.base_model is not ctx.model and ctx.data is not None
        self.events.append(("eval", step, dict(ctx.last_eval)))

    def on_end(self, ctx):
        self.events.append(("end", ctx.step))


def test_timeline_and_metrics(ft_config, tmp_path):
    cb = Recorder()
    rec = finetune(ft_config(), tmp_path / "run", callbacks=[cb], progress=False)
    rows = rec.timeline()
    steps = sorted({r["step"] for r in rows})
    assert steps == [0, 2, 4]
    n_facts = {s: len(v) for s, v in rec.world_and_data()[1].eval_sets.items()}
    for step in steps:
        at = [r for r in rows if r["step"] == step]
        assert len(at) == sum(n_facts.values())
        assert len({(r["fact_id"], r["set"]) for r in at}) == len(at)  # one row per fact per eval
    assert set(rows[0]) == {"step", "fact_id", "set", "outcome", "correct", "gold_logprob", "prediction"}
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for k in ("task_accuracy", "plasticity_accuracy", "stability_accuracy"):
        assert set(m[k]) == {"final", "peak", "n"} and m[k]["n"] == n_facts[k.split("_")[0]]
    assert set(m["stability_accuracy_base"]) == {"final", "peak"}
    assert [e[0] for e in cb.events] == ["start", "eval", "eval", "eval", "end"]
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert load_run(tmp_path / "run").metrics == rec.metrics
    ds = rec.timeline_dataset()  # the same rows through `datasets` (Arrow)
    assert len(ds) == len(rows) and set(ds.column_names) == set(rows[0])
    assert ds.filter(lambda r: r["step"] == 4)["fact_id"] == [r["fact_id"] for r in rows if r["step"] == 4]


class Crash(Exception):
    pass


class CrashAt:
    def __init__(self, step):
        self.step = step

    def on_eval(self, ctx, step):
        if step == self.step:
            raise Crash


def test_resume_after_interruption_is_identical(ft_config, tmp_path):
    cfg = ft_config(steps=6, eval_every=2, ckpt_every=4)
    ref = finetune(cfg, tmp_path / "ref", progress=False)
    with pytest.raises(Crash):  # dies after the step-6 evaluation, last checkpoint at step 4
        finetune(cfg, tmp_path / "run", callbacks=[CrashAt(6)], progress=False)
    assert (tmp_path / "run" / "checkpoints" / "latest.json").exists()
    with pytest.raises(RunDirError, match="interrupted"):
        finetune(cfg, tmp_path / "run", progress=False, resume=False)
    again = finetune(cfg, tmp_path / "run", progress=False)
    assert again.metrics["history"] == ref.metrics["history"]
    assert again.timeline() == ref.timeline()
    a, b = ref.load_model()[0].state_dict(), again.load_model()[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical weights, not just equal scores


def test_finished_run_is_returned_not_retrained(ft_config, tmp_path):
    cfg = ft_config()
    finetune(cfg, tmp_path / "run", progress=False)
    cb = Recorder()
    rec = finetune(cfg, tmp_path / "run", callbacks=[cb], progress=False)
    assert cb.events == [] and "stability_accuracy" in rec.metrics


def test_dir_with_other_run_is_refused_untouched(ft_config, tmp_path):
    finetune(ft_config(), tmp_path / "run", progress=False)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")}
    with pytest.raises(RunDirError, match="different fine-tuning run"):
        finetune(ft_config(lr=5e-4), tmp_path / "run", progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")} == before


@pytest.mark.parametrize("args, msg", [
    (["--method", "magic"], "valid methods are"),
    (["--method", "freeze", "--groups", "attention"], "valid groups"),
    (["--method", "freeze", "--groups", "mlp:0-9"], "outside the model"),
    (["--method", "sft", "--unknown-fraction", "1.5"], "outside [0, 1]"),
    (["--method", "sft", "--kl-weight", "2"], "valid options"),
])
def test_cli_bad_input(args, msg, ft_base_dir, tmp_path, capsys):
    from interference.finetune import main
    out = tmp_path / "cli"
    code = main(args + ["--out", str(out), "--base-dir", ft_base_dir, "--quick", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and msg in err and "\n" not in err
    assert not out.exists()


def test_a_field_added_later_leaves_cached_runs_config_hash_alone():
    # runs cached before `strategy` existed must keep their hash (else they refuse or retrain)
    from interference.io import config_hash
    from interference.train import FinetuneConfig
    cfg = FinetuneConfig()
    d = cfg.to_dict()
    assert "strategy" not in d
    assert config_hash(d) == config_hash(FinetuneConfig(**d).to_dict())
    fsdp = FinetuneConfig(strategy="fsdp").to_dict()
    assert fsdp["strategy"] == "fsdp" and config_hash(fsdp) != config_hash(d)
