"""--report-to: the run's numbers per evaluation reach TensorBoard's event files."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest


def test_scalars_count_forgetting_against_the_base():
    from interference.tracking import scalars
    base = {"a": True, "b": True, "c": False, "n": False}
    rows = [{"fact_id": "a", "set": "stability", "correct": False},  # forgotten
            {"fact_id": "b", "set": "stability", "correct": True},
            {"fact_id": "c", "set": "stability", "correct": True},  # was wrong: not forgetting
            {"fact_id": "n", "set": "plasticity", "correct": True}]  # learned
    ctx = SimpleNamespace(last_loss=0.5, last_eval={"stability": 2 / 3, "plasticity": 1.0}, timeline=rows)
    s = scalars(ctx, base)
    assert s == {"loss": 0.5, "accuracy/stability": 2 / 3, "accuracy/plasticity": 1.0,
                 "forgotten/stability": 1.0, "forgotten/plasticity": 0.0, "learned/plasticity": 1.0}
    assert "loss" not in scalars(SimpleNamespace(last_loss=None, last_eval={}, timeline=[]), {})


def test_a_missing_backend_is_one_sentence(tmp_path, monkeypatch):
    import importlib.util
    from interference.tracking import make_tracker
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    with pytest.raises(ValueError, match="needs the mlflow package"):
        make_tracker("mlflow", tmp_path)


def test_finetune_report_to_tensorboard_writes_the_promised_scalars(tmp_path, ft_base_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from interference.finetune import main
    out = tmp_path / "run"
    argv = ["--method", "sft", "--quick", "--base-dir", ft_base_dir, "--steps", "4", "--n-facts", "16",
            "--n-task", "4", "--n-stability", "16", "--eval-every", "2", "--lr", "3e-3", "--out", str(out),
            "--no-progress", "--device", "cpu", "--report-to", "tensorboard"]
    assert main(argv) == 0
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    sets = ("task", "plasticity", "stability")
    assert tags == {"loss", "learned/plasticity", *(f"{k}/{s}" for k in ("accuracy", "forgotten") for s in sets)}
    assert [e.step for e in acc.Scalars("accuracy/stability")] == [0, 2, 4]  # step 0 and every 2 updates
    assert [e.step for e in acc.Scalars("loss")] == [2, 4]  # no loss before the first update
    # the counts are the timeline's: base-right facts that are wrong at that step
    rows = [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]
    base = {r["fact_id"]: r["correct"] for r in rows if r["step"] == 0}
    for e in acc.Scalars("forgotten/stability"):
        want = sum(1 for r in rows if r["step"] == e.step and r["set"] == "stability"
                   and base[r["fact_id"]] and not r["correct"])
        assert e.value == want
    hist = json.loads((out / "metrics.json").read_text())["history"]
    assert [round(e.value, 6) for e in acc.Scalars("accuracy/task")] == [round(h["task"], 6) for h in hist]
