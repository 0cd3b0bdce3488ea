"""Fault injection across processes: ``kill -9`` at chosen points of fine-tuning and pre-training,
then resume, compared byte for byte with a run that was never interrupted; damaged logs and
finished runs; two writers started on one run directory (issue 12).

Kills come from the INTERFERENCE_FAULT hook of ``interference.io`` (the process SIGKILLs itself
just before or after a chosen atomic write), so each kill lands at a known point.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interference.io import RunDirError
from interference.train import finetune, load_run

REPO = Path(__file__).resolve().parents[1]
FT_SCRIPT = ("import json, sys; from interference.train import FinetuneConfig, finetune; "
             "finetune(FinetuneConfig.from_dict(json.load(open(sys.argv[1]))), sys.argv[2], progress=False)")


def _run(code: str, *args, fault: str | None = None, check_killed: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("INTERFERENCE_FAULT", None)
    if fault:
        env["INTERFERENCE_FAULT"] = fault
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True)
    if check_killed:
        assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-2000:])
    return p


def _same_run(a: Path, b: Path) -> None:
    for name in ("timeline.jsonl", "model/model.safetensors", "sft_data.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma == mb


@pytest.fixture(scope="module")
def ft_case(ft_config, tmp_path_factory):
    """(config, its JSON file, an uninterrupted reference run): 6 steps, checkpoints at 2 and 4."""
    d = tmp_path_factory.mktemp("ft_faults")
    cfg = ft_config(steps=6, eval_every=2, ckpt_every=2)
    (d / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    finetune(cfg, d / "ref", progress=False)
    return cfg, d / "cfg.json", d / "ref"


@pytest.fixture(scope="module")
def killed_after_final_weights(ft_case, tmp_path_factory) -> Path:
    """A run killed after its final weights (so after its step-4 checkpoint and the step-6 rows)."""
    _, cfg_file, _ = ft_case
    out = tmp_path_factory.mktemp("killed") / "run"
    _run(FT_SCRIPT, cfg_file, out, fault="kill-after:model/model.safetensors:1")
    return out


def _copy(src: Path, tmp_path: Path) -> Path:
    import shutil
    return Path(shutil.copytree(src, tmp_path / "run"))


@pytest.mark.parametrize("fault", [
    "kill-after:checkpoints/latest.json:1",         # right after the first checkpoint is committed
    "kill-before:state.safetensors:2",              # mid-write of the second checkpoint
    None,                                           # after the final weights, before metrics.json
])
def test_finetune_killed_then_resumed_is_bit_identical(ft_case, killed_after_final_weights, tmp_path, fault):
    cfg, cfg_file, ref = ft_case
    out = tmp_path / "run"
    if fault is None:
        out = _copy(killed_after_final_weights, tmp_path)
    else:
        _run(FT_SCRIPT, cfg_file, out, fault=fault)
    assert not (out / "checksums.json").exists()  # not sealed: it is not finished
    with pytest.raises(RunDirError, match="no finished"):
        load_run(out)
    finetune(cfg, out, progress=False)
    _same_run(ref, out)
    assert load_run(out).metrics == json.loads((ref / "metrics.json").read_text())


PT_SCRIPT = ("import sys; sys.path.insert(0, sys.argv[2]); from test_pretrain import _micro; "
             "from interference.pretrain import pretrain; pretrain(_micro(), sys.argv[1], device='cpu', progress=False)")


def test_pretrain_killed_twice_then_resumed_is_bit_identical(tmp_path):
    from interference.pretrain import pretrain
    from test_pretrain import _micro
    pretrain(_micro(), tmp_path / "ref", device="cpu", progress=False)
    out = tmp_path / "run"
    _run(PT_SCRIPT, out, REPO / "tests", fault="kill-after:checkpoint/latest.json:1")  # step 20 checkpointed
    _run(PT_SCRIPT, out, REPO / "tests", fault="kill-before:run/model.safetensors:1")  # mid-write of final weights
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()
    pretrain(_micro(), out, device="cpu", progress=False)
    for name in ("model.safetensors", "slick.jsonl"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "ref", out))
    ma.pop("train_seconds"), mb.pop("train_seconds")
    assert ma == mb


# ------------------------------------------------------------------ the timeline on resume
def test_timeline_with_garbage_after_the_checkpoint_is_cut_back(ft_case, killed_after_final_weights, tmp_path):
    cfg, _, ref = ft_case
    out = _copy(killed_after_final_weights, tmp_path)
    with open(out / "timeline.jsonl", "ab") as fh:  # what a crash can leave: NUL padding, half a row
        fh.write(b"\x00" * 300 + b'{"step": 6, "fact')
    finetune(cfg, out, progress=False)
    _same_run(ref, out)


@pytest.mark.parametrize("damage, msg", [
    ("delete", "is missing"),
    ("truncate", "shorter than at the last checkpoint"),
    ("garbage", "was changed before the last checkpoint"),
    ("nul", "was changed before the last checkpoint"),
])
def test_timeline_damaged_before_the_checkpoint_is_refused(ft_case, killed_after_final_weights, tmp_path, damage,
                                                          msg, capsys):
    from interference.cli import run_main
    cfg, _, _ = ft_case
    out = _copy(killed_after_final_weights, tmp_path)
    tl = out / "timeline.jsonl"
    data = tl.read_bytes()
    if damage == "delete":
        tl.unlink()
    elif damage == "truncate":
        tl.write_bytes(data[:100])
    elif damage == "garbage":
        tl.write_bytes(b"garbage\n" + data[8:])
    else:
        tl.write_bytes(b"\x00" * 64 + data[64:])
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(RunDirError, match=msg):
        finetune(cfg, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before
    # a command line says the same in one sentence
    assert run_main(lambda: finetune(cfg, out, progress=False) and 0) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


# ------------------------------------------------------------------ sealed runs: damage is noticed
@pytest.mark.parametrize("victim", ["metrics.json", "timeline.jsonl", "model/model.safetensors", "checksums.json"])
def test_damaged_finished_finetune_is_refused_then_recomputed(ft_case, tmp_path, victim, capsys):
    cfg, _, ref = ft_case
    out = _copy(ref, tmp_path)
    f = out / victim
    f.write_bytes(f.read_bytes()[:-7] + b"garbage")
    with pytest.raises(RunDirError, match="is damaged"):
        load_run(out)
    finetune(cfg, out, progress=False)
    assert "is damaged" in capsys.readouterr().err
    _same_run(ref, out)


def test_cached_base_that_lost_its_weights_is_rebuilt(tmp_path, capsys):
    from interference.models import load_model
    from interference.pretrain import pretrain
    from test_pretrain import _micro
    out = tmp_path / "base"
    pretrain(_micro(), out, device="cpu", progress=False)
    good = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").unlink()
    pretrain(_micro(), out, device="cpu", progress=False)  # what the error message tells the user to run
    assert "model.safetensors is missing" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == good
    load_model(out)


# ------------------------------------------------------------------ two writers, one directory
def test_second_identical_finetune_is_refused_while_the_first_runs(ft_base_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "interference.finetune", "--method", "sft", "--quick", "--base-dir", ft_base_dir,
            "--n-facts", "16", "--steps", "20", "--eval-every", "10", "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / "timeline.jsonl").exists():  # claimed and writing
            assert first.poll() is None, first.communicate()
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # hold it mid-run, whatever the machine's speed
        second = subprocess.run(argv, env=env, capture_output=True, text=True)
    finally:
        first.send_signal(signal.SIGCONT)
    out1, err1 = first.communicate()
    assert first.returncode == 0, err1[-2000:]
    assert second.returncode == 2
    err = second.stderr.strip()
    assert err == (f"error: {out} is being written by process {first.pid} right now; wait for it to finish "
                   "or choose another --out.")
    rows = load_run(out).timeline()
    assert sorted({r["step"] for r in rows}) == [0, 10, 20]
    assert len(rows) == len({(r["step"], r["fact_id"], r["set"]) for r in rows})  # nothing written twice
    from interference.finetune import main
    assert main(argv[3:]) == 0  # now it is finished: reused
    assert capsys.readouterr().out == out1
