"""Fault injection, in process: hostile and damaged files, bad configs and flags, one writer per
run directory. Every refusal must be one sentence and leave no claimed directory behind; every
recovery must give the same result as a run that never met the fault (issue 12)."""
from __future__ import annotations

import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from interference import checkpoint as ck
from interference.hypotheses.grid import Cell, run_grid
from interference.io import (RunDirError, atomic_write_json, check_not_busy, claim_run_dir, read_checked_json,
                             release_run_dir, write_checked_json)
from interference.models import ModelError
from interference.world import WorldConfig, WorldConfigError

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _exit_code(main, argv) -> int:
    """A CLI's exit code whether it returns it or argparse raises SystemExit with it."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


# ------------------------------------------------------------------ checkpoints: no pickle, checksums
def _toy(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return model, opt, sched


def _train(model, opt, sched, steps: int) -> None:
    for _ in range(steps):
        loss = model(torch.randn(3, 4)).pow(2).mean()  # draws from the global RNG: resume must restore it
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_checkpoint_round_trip_is_bit_identical_and_pickle_free(tmp_path):
    ref = _toy()
    _train(*ref, 6)
    model, opt, sched = _toy()
    _train(model, opt, sched, 3)
    ck.save_checkpoint(tmp_path, model, opt, sched, 3, {"history": [{"step": 3, "loss": 0.1, "x": None}],
                                                         "pair": (1, 2.5), "t": torch.arange(3)})
    assert sorted(p.name for p in (tmp_path / "step-0000003").iterdir()) == sorted([ck.WEIGHTS, ck.TENSORS, ck.STATE])
    again = _toy(seed=1)  # different init: everything must come from the checkpoint
    step, extra = ck.load_checkpoint(tmp_path, *again)
    assert step == 3 and extra["pair"] == (1, 2.5) and torch.equal(extra["t"], torch.arange(3))
    assert extra["history"] == [{"step": 3, "loss": 0.1, "x": None}]
    _train(*again, 3)
    for p, q in zip(ref[0].parameters(), again[0].parameters()):
        assert torch.equal(p, q)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_crafted_pickle_in_a_run_directory_never_executes(tmp_path):
    marker = tmp_path / "executed"
    step_dir = tmp_path / "ckpt" / "step-0000002"
    step_dir.mkdir(parents=True)
    payload = {"step": 2, "opt": _Evil(marker)}
    with open(step_dir / ck.LEGACY_STATE, "wb") as fh:  # the old pickle format, crafted
        pickle.dump(payload, fh)
    with open(step_dir / ck.STATE, "wb") as fh:  # and a pickle where JSON belongs
        pickle.dump(payload, fh)
    torch.save(payload, step_dir / "model.safetensors")
    (tmp_path / "ckpt" / ck.LATEST).write_text(json.dumps({"step": 2, "dir": "step-0000002"}))
    with pytest.raises(ModelError, match="cannot be used"):
        ck.load_checkpoint(tmp_path / "ckpt", *_toy())
    assert not marker.exists()
    # no torch.load in the package may unpickle arbitrary objects
    for f in (REPO / "interference").rglob("*.py"):
        for call in re.findall(r"torch\.load\([^)]*\)", f.read_text()):
            assert "weights_only=True" in call, f"{f}: {call}"


@pytest.mark.parametrize("name", ["/etc", "../elsewhere/step-0000002", "step-0000002/..", 7, None])
def test_latest_json_must_name_a_child_folder(tmp_path, name):
    model, opt, sched = _toy()
    ck.save_checkpoint(tmp_path, model, opt, sched, 2, {})
    meta = json.loads((tmp_path / ck.LATEST).read_text())
    (tmp_path / ck.LATEST).write_text(json.dumps({**meta, "dir": name}))
    with pytest.raises(ModelError, match="not a step-NNNNNNN folder"):
        ck.load_checkpoint(tmp_path, *_toy())


@pytest.mark.parametrize("victim, damage", [
    (ck.WEIGHTS, "flip"), (ck.TENSORS, "flip"), (ck.STATE, "flip"), (ck.STATE, "delete"), (ck.LATEST, "garbage"),
])
def test_damaged_checkpoint_is_refused_by_name(tmp_path, victim, damage):
    model, opt, sched = _toy()
    ck.save_checkpoint(tmp_path, model, opt, sched, 2, {"history": []})
    path = tmp_path / victim if victim == ck.LATEST else tmp_path / "step-0000002" / victim
    if damage == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(b"\x00\x00garbage")
    with pytest.raises(ModelError) as e:
        ck.load_checkpoint(tmp_path, *_toy())
    assert victim in str(e.value) and "delete" in str(e.value)


# ------------------------------------------------------------------ file modes
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_writes_get_the_umask_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == mode


# ------------------------------------------------------------------ one writer per run directory
def test_second_writer_is_refused_and_a_dead_writers_lock_is_recovered(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from interference.io import claim_run_dir; "
         "claim_run_dir(sys.argv[1], {'a': 1}); print('held', flush=True); time.sleep(120)", str(out)],
        env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"being written by process {holder.pid} right now"):
            claim_run_dir(out, {"a": 1})
        with pytest.raises(RunDirError, match="being written"):
            check_not_busy(out)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    claim_run_dir(out, {"a": 1})  # the lock of a killed process is gone with it
    check_not_busy(out)  # our own lock does not make the directory busy for us
    release_run_dir(out)


def test_a_waiter_finds_the_run_its_holder_finished_instead_of_training_it_again(tmp_path):
    """Two processes needing one cache entry: the second waits, and must then see the first's
    finished, sealed run (its seal kept), not unseal it and train the whole run again."""
    from interference.io import finished_run, seal_run_dir, verify_run_dir
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, json, pathlib; from interference.io import claim_run_dir, "
         "seal_run_dir, release_run_dir; o = pathlib.Path(sys.argv[1]); claim_run_dir(o, {'a': 1}); "
         "print('held', flush=True); time.sleep(1); (o / 'metrics.json').write_text('{}'); "
         "seal_run_dir(o, ['config.json', 'metrics.json']); release_run_dir(o)", str(out)],
        env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        claim_run_dir(out, {"a": 1}, wait=True)  # blocks until the holder has sealed and released
        assert verify_run_dir(out, ("metrics.json",)) == ""
        assert finished_run(out, {"a": 1}, ("metrics.json",), "run")
        release_run_dir(out)
    finally:
        holder.wait(timeout=60)
    claim_run_dir(out, {"a": 1})  # without waiting, a claim still unseals: the caller means to rewrite it
    assert not (out / "checksums.json").exists()
    release_run_dir(out)


# ------------------------------------------------------------------ world configs and flags
def _world_file(tmp_path, **changes) -> Path:
    d = WorldConfig.quick().to_dict()
    d.update(changes)
    p = tmp_path / "world.json"
    p.write_text(json.dumps(d) if changes.get("__raw__") is None else changes["__raw__"])
    return p


HUGE = dict(n_pieces=320, max_name_pieces=3, n_pretrain_qa=5_000_000, n_statement_only=5_000_000,
            n_unseen=5_000_000)


@pytest.mark.parametrize("changes, msg", [
    ({"n_values": "12"}, "n_values must be a whole number"),
    ({"n_values": 12.5}, "n_values must be a whole number"),
    ({"n_values": math.nan}, "n_values must be a whole number"),
    ({"n_unseen": True}, "n_unseen must be a whole number"),
    ({"relations": None}, "relations must be a list"),
    ({"relations": "born_in"}, "relations must be a list"),
    ({"__raw__": "null"}, "must be a JSON object"),
    ({"__raw__": "[1, 2]"}, "must be a JSON object"),
    ({"__raw__": "\xff\xfe"}, "not valid JSON"),
    (HUGE, "GB of memory"),
])
def test_bad_world_configs_are_one_sentence_before_any_directory(tmp_path, capsys, changes, msg):
    from interference.pretrain import main
    wfile = _world_file(tmp_path, **changes)
    if changes.get("__raw__", "").startswith("\xff"):
        wfile.write_bytes(b"\xff\xfe{}")
    out = tmp_path / "out"
    assert _exit_code(main, ["--world", str(wfile), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and msg in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_huge_world_is_refused_with_an_estimate():
    with pytest.raises(WorldConfigError, match=r"15,000,000 entities needs about \d+\.\d GB"):
        WorldConfig(**HUGE)
    assert WorldConfig.quick().estimated_bytes() < 50e6  # the tiny world is tiny


@pytest.mark.parametrize("args, msg", [
    (["--lr", "nan"], "not a finite number"),
    (["--lr", "inf"], "not a finite number"),
    (["--lr", "-1"], "must be positive"),
    (["--steps", "0"], "must be positive"),
    (["--method", "self_distill", "--temperature", "nan"], "not a finite number"),
    (["--method", "self_distill", "--kl-weight", "nan"], "not a finite number"),
    (["--method", "self_distill", "--option", "kl_weight=NaN"], "is nan"),
    (["--unknown-fraction", "nan"], "not a finite number"),
    (["--device", "bogus"], "not a device"),
])
def test_finetune_bad_flags_are_refused_before_claiming(tmp_path, capsys, ft_base_dir, args, msg):
    from interference.finetune import main
    out = tmp_path / "run"
    argv = ["--method", "sft", "--quick", "--base-dir", ft_base_dir, "--out", str(out), "--no-progress"]
    code = _exit_code(main, argv + args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and msg in err and "\n" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("args, msg", [
    (["--steps", "0"], "must be positive"),
    (["--steps", "-5"], "must be positive"),
    (["--device", "bogus"], "not a device"),
])
def test_pretrain_bad_flags_are_refused_before_claiming(tmp_path, capsys, args, msg):
    from interference.pretrain import main
    out = tmp_path / "run"
    assert _exit_code(main, ["--quick", "--out", str(out), "--no-progress"] + args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and msg in err and "\n" not in err
    assert not out.exists()


def test_out_naming_a_file_is_refused_and_the_file_kept(tmp_path, capsys, ft_base_dir):
    from interference.finetune import main
    f = tmp_path / "notes.txt"
    f.write_text("precious")
    code = _exit_code(main, ["--method", "sft", "--quick", "--steps", "2", "--base-dir", ft_base_dir, "--out", str(f),
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is a file" in err and "\n" not in err
    assert f.read_text() == "precious"


def test_base_dir_that_is_not_a_finished_pretraining_run(tmp_path, capsys, ft_base_dir):
    from interference.finetune import main
    fake = tmp_path / "base"
    fake.mkdir()
    for name in ("config.json", "model.safetensors", "model_config.json", "metrics.json"):
        (fake / name).write_bytes((Path(ft_base_dir) / name).read_bytes())
    out = tmp_path / "run"
    code = _exit_code(main, ["--method", "sft", "--quick", "--steps", "2", "--base-dir", str(fake), "--out", str(out),
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not a finished pre-training run" in err and "slick.jsonl" in err and "\n" not in err
    assert not out.exists()


def test_full_or_read_only_disk_is_one_sentence(tmp_path, capsys, ft_base_dir, monkeypatch):
    import errno

    from interference import io
    from interference.finetune import main

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "x"))
    monkeypatch.setattr(io.os, "replace", full)
    code = _exit_code(main, ["--method", "sft", "--quick", "--steps", "2", "--base-dir", ft_base_dir,
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "No space left on device" in err and "\n" not in err


# ------------------------------------------------------------------ hypothesis cells
def test_damaged_cells_are_recomputed_with_a_note(tmp_path, capsys):
    calls = []

    def make(i):
        return Cell("t", {"i": i}, lambda i=i: calls.append(i) or {"value": i * 1.5})
    cells = [make(i) for i in range(6)]
    first = run_grid(cells, tmp_path, progress=False)
    assert first.computed == 6 and calls == list(range(6))
    files = [tmp_path / c.file for c in cells]
    files[0].write_text("[1, 2, 3]")  # valid JSON, wrong shape
    files[1].write_bytes(b"\xff\xfe\x00{")  # not UTF-8
    stored, _ = read_checked_json(files[2])
    stored["result"]["value"] = 99.0  # edited: fails its checksum
    files[2].write_text(json.dumps({**stored, "sha256": "0" * 64}))
    write_checked_json(files[3], {"kind": "t", "key": {"i": 3}, "result": [1]})  # checksummed, wrong shape
    files[4].write_text(json.dumps({"kind": "t", "key": {"i": 4}, "result": {"value": 6.0}}))  # legacy: trusted
    calls.clear()
    again = run_grid(cells, tmp_path, progress=False)
    err = capsys.readouterr().err
    assert calls == [0, 1, 2, 3] and again.reused == 2
    assert [r["value"] for r in again.results] == [0.0, 1.5, 3.0, 4.5, 6.0, 7.5]
    for why in ("holds a JSON list", "not UTF-8", "does not match its checksum", "no result object"):
        assert why in err
    assert run_grid(cells, tmp_path, progress=False).computed == 0  # repaired on disk


def test_cells_being_a_file_is_refused(tmp_path, capsys):
    from interference.run_hypothesis import main
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cells").write_text("not a directory")
    assert _exit_code(main, ["capacity", "--quick", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file where a directory belongs" in err and "\n" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cells"]


def _raise(e: BaseException):
    def body() -> int:
        raise e
    return body


def test_run_main_turns_known_errors_into_one_sentence_and_keeps_bugs_loud(capsys):
    import errno

    from interference.cli import run_main
    assert run_main(_raise(PermissionError(errno.EACCES, "Permission denied", "/ro/run/config.json"))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write or read /ro/run/config.json (Permission denied)") and "\n" not in err
    assert run_main(_raise(RunDirError("first line\nsecond line"))) == 2
    assert capsys.readouterr().err == "error: first line second line\n"
    assert run_main(_raise(KeyboardInterrupt())) == 130
    assert "resume" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_main(_raise(ZeroDivisionError()))
