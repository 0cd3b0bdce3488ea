"""Training checkpoints shared by pre-training and fine-tuning: weights, optimizer, schedule, RNG.

Why one module: both loops must resume to bit-identical results, and a crash mid-write must
never leave a checkpoint that looks complete. Each checkpoint is a ``step-N/`` folder written
file by file; ``latest.json`` is rewritten (atomically) only after the folder is complete, so it
is the commit point, and older folders are removed after it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from interference.io import atomic_save, atomic_write_json
from interference.models import ModelError, load_state

LATEST = "latest.json"


def save_checkpoint(root: Path, model, opt, sched, step: int, extra: dict) -> None:
    """Write a checkpoint of ``step`` under ``root``; ``extra`` holds loop state (history, ...)."""
    ck = Path(root) / f"step-{step:07d}"
    ck.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_save(ck / "model.safetensors", lambda tmp: save_file(state, tmp))
    atomic_save(ck / "train_state.pt", lambda tmp: torch.save(
        {"step": step, "opt": opt.state_dict(), "sched": sched.state_dict(), "extra": extra,
         "torch_rng": torch.get_rng_state(),
         "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}, tmp))
    atomic_write_json(Path(root) / LATEST, {"step": step, "dir": ck.name})
    for old in Path(root).glob("step-*"):
        if old.name != ck.name:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(root: Path, model, opt, sched) -> tuple[int, dict] | None:
    """Restore the latest checkpoint under ``root`` into model/opt/sched and the RNGs.

    Returns (step, extra), or None when there is none; a corrupted one raises ModelError.
    """
    latest = Path(root) / LATEST
    if not latest.exists():
        return None
    try:
        ck = Path(root) / json.loads(latest.read_text())["dir"]
        state = torch.load(ck / "train_state.pt", map_location="cpu", weights_only=False)
    except Exception:
        raise ModelError(f"checkpoint under {root} is corrupted; delete {root} to restart this run.") from None
    load_state(model, ck / "model.safetensors")
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["step"]), state["extra"]


def has_checkpoint(root: Path) -> bool:
    return (Path(root) / LATEST).exists()
