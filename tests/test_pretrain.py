"""Pre-training: memorisation, format generalisation, CLI files, resume, and refusals."""
import dataclasses
import json

import pytest
import torch

from interference import pretrain as pt
from interference.models import ModelConfig, ModelError, load_model
from interference.bases import BaseSpec, PretrainConfig
from interference.world import WorldConfig


def test_tiny_world_is_memorised_and_format_generalises(quick_base):
    _, _, _, run_dir = quick_base
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["history"][-1]["statement_acc"] >= 0.9  # memorisation within the test budget
    assert m["pretrain_qa_accuracy"] >= 0.9
    # the QA format reaches facts seen only as statements, far above never-seen entities
    assert m["known_qa_accuracy"] > m["unseen_qa_accuracy"] + 0.3
    assert m["unseen_qa_accuracy"] < 3 * m["chance"] + 0.1
    assert sum(m["slick_total"].values()) == m["n_facts"]


def _micro(steps=40, ckpt_every=20) -> BaseSpec:
    world = WorldConfig(n_pieces=16, n_uuid_pieces=8, n_filler=3, n_disjoint_pieces=4, n_disjoint_pretrain=2,
                        n_pretrain_qa=12, n_statement_only=12, n_unseen=6, relations=("born_in", "speaks"), n_values=6)
    return BaseSpec(world, ModelConfig(n_layers=1, d_model=32, n_heads=2, d_mlp=64),
                    PretrainConfig(steps=steps, batch_size=16, warmup=5, eval_every=10, ckpt_every=ckpt_every,
                                   slick_samples=2, consolidation=None))


def test_cli_writes_metrics_and_config_and_reuses(tmp_path, monkeypatch):
    spec = _micro()
    wfile = tmp_path / "world.json"
    spec.world.save(wfile)
    monkeypatch.setattr(pt.BaseSpec, "default", classmethod(lambda cls, quick=False: _micro()))
    out = tmp_path / "run"
    assert pt.main(["--out", str(out), "--world", str(wfile), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for k in ("known_qa_accuracy", "unseen_qa_accuracy", "slick", "slick_total"):
        assert k in m
    cfg = json.loads((out / "config.json").read_text())
    assert WorldConfig.from_dict(cfg["world"]) == spec.world and cfg["pretrain"]["steps"] == 40
    assert (out / "slick.jsonl").exists() and (out / "model.safetensors").exists()
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert pt.main(["--out", str(out), "--world", str(wfile), "--no-progress"]) == 0
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained


def test_out_dir_holding_another_run_is_refused_untouched(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pt.BaseSpec, "default", classmethod(lambda cls, quick=False: _micro()))
    out = tmp_path / "run"
    assert pt.main(["--out", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert pt.main(["--out", str(out), "--no-progress", "--steps", "30"]) == 2
    err = capsys.readouterr().err
    assert "already holds a different" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_bad_world_file_is_one_sentence(tmp_path, capsys):
    bad = tmp_path / "w.json"
    bad.write_text(json.dumps({"n_values": 1}))
    assert pt.main(["--world", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch):
    spec = _micro()
    pt.pretrain(spec, tmp_path / "full", device="cpu", progress=False)

    from interference import checkpoint
    real = checkpoint.save_checkpoint
    calls = []

    def crash_after_first(*a, **k):
        real(*a, **k)
        calls.append(1)
        raise KeyboardInterrupt  # the run dies right after its first checkpoint (step 20)

    monkeypatch.setattr(checkpoint, "save_checkpoint", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        pt.pretrain(spec, tmp_path / "resumed", device="cpu", progress=False)
    assert (tmp_path / "resumed" / "checkpoint" / "latest.json").exists()
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    monkeypatch.setattr(checkpoint, "save_checkpoint", real)
    pt.pretrain(spec, tmp_path / "resumed", device="cpu", progress=False)
    a, _, _ = load_model(tmp_path / "full")
    b, _, _ = load_model(tmp_path / "resumed")
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    ma = json.loads((tmp_path / "full" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert ma["known_qa_accuracy"] == mb["known_qa_accuracy"] and ma["history"] == mb["history"]


def test_missing_and_corrupted_checkpoints_are_named(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="no saved model"):
        load_model(tmp_path)
    spec = _micro()
    out = tmp_path / "run"
    pt.pretrain(spec, out, device="cpu", progress=False)
    (out / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ModelError, match="corrupted"):
        load_model(out)
    # a corrupted training checkpoint is named too, and the run is not silently restarted
    spec2 = dataclasses.replace(spec, pretrain=dataclasses.replace(spec.pretrain, steps=41))
    out2 = tmp_path / "run2"
    from interference.io import claim_run_dir
    claim_run_dir(out2, {**spec2.to_dict(), "hash": spec2.hash()})
    (out2 / "checkpoint" / "step-0000020").mkdir(parents=True)
    (out2 / "checkpoint" / "latest.json").write_text('{"step": 20, "dir": "step-0000020"}')
    (out2 / "checkpoint" / "step-0000020" / "train_state.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match="corrupted"):
        pt.pretrain(spec2, out2, device="cpu", progress=False)


def test_consolidation_help_names_a_fixed_length_default(monkeypatch):
    # a default spec with the fixed-length recipe (consolidation None) once crashed every CLI call
    monkeypatch.setattr(pt.BaseSpec, "default", classmethod(lambda cls, quick=False: _micro(steps=40)))
    assert "fixed 40 steps" in pt.consolidation_help()
    monkeypatch.undo()
    assert "default 1)" in pt.consolidation_help()  # the real default spec: a criterion, not a length
