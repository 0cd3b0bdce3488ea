"""Training checkpoints shared by pre-training and fine-tuning: weights, optimizer, schedule, RNG.

Why one module: both loops must resume to bit-identical results, and a crash mid-write must
never leave a checkpoint that looks complete. Each checkpoint is a ``step-N/`` folder written
file by file; ``latest.json`` is rewritten (atomically) only after the folder is complete, so it
is the commit point, and older folders are removed after it.

Why only the folder the previous ``latest.json`` named: a checkpoint root is a folder people can
point elsewhere (a symlink to a bigger disk, an archive unpacked beside it), so rotation and the
final cleanup remove only folders this run wrote (``step-NNNNNNN`` holding nothing but our three
files) and refuse a root or folder that is a symlink, instead of following it out of the run.

Why no pickle: a run directory is something people share and unpack from archives, and
unpickling runs code. So every tensor (weights, optimizer moments, RNG states) goes to
safetensors and everything else (step, schedule, the loop's ``extra``) to JSON; ``latest.json``
names its folder by a plain child name and records the sha256 of each file in it, so a damaged
or foreign checkpoint is refused, never loaded. Checkpoints written as ``train_state.pt`` by
earlier versions are still read, with ``torch.load(weights_only=True)`` (tensors and plain
containers only, no code).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from interference.io import RunDirError, atomic_save, atomic_write_json, sha256_file
from interference.models import ModelError, load_state

LATEST = "latest.json"
WEIGHTS = "model.safetensors"
TENSORS = "state.safetensors"  # optimizer moments, RNG states, any tensor in `extra`
STATE = "train_state.json"  # everything else, tensors replaced by references into TENSORS
LEGACY_STATE = "train_state.pt"
_STEP_DIR = re.compile(r"step-\d{7}")


# ------------------------------------------------------------------ tensors + JSON, no pickle
def _split(obj, tensors: dict[str, torch.Tensor]):
    """A JSON tree for ``obj`` with tensors moved into ``tensors``; tuples and non-string dict
    keys (the optimizer's parameter indices) are tagged so they come back as they were."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_split(k, tensors), _split(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_split(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_split(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint state holds a {type(obj).__name__}, which is neither a tensor nor JSON.")


def _join(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__tuple__"}:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__items__"}:
            return {_join(k, tensors): _join(v, tensors) for k, v in obj["__items__"]}
        return {k: _join(v, tensors) for k, v in obj.items()}
    return obj


def _train_state(opt, sched, step: int, extra: dict) -> dict:
    return {"step": step, "opt": opt.state_dict(), "sched": sched.state_dict(), "extra": extra,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def check_root(root: Path) -> None:
    """Refuse a checkpoint root (or a step folder in it) that is a symlink: saving, loading or
    cleaning up through it would read or delete files outside the run directory."""
    root = Path(root)
    links = [p for p in ([root] + (sorted(root.glob("step-*")) if root.is_dir() else [])) if p.is_symlink()]
    if links:
        raise RunDirError(f"{links[0]} is a symbolic link, and checkpoints are only written, read and deleted "
                          "inside the run directory; replace the link by a real folder or choose another --out.")


def _ours(folder: Path) -> bool:
    """A step folder this package wrote: a real folder holding only checkpoint files (and the
    dot-temporaries a kill may leave)."""
    if folder.is_symlink() or not folder.is_dir() or not _STEP_DIR.fullmatch(folder.name):
        return False
    allowed = {WEIGHTS, TENSORS, STATE, LEGACY_STATE}
    return all((f.name in allowed or f.name.startswith(".")) and f.is_file() and not f.is_symlink()
               for f in folder.iterdir())


def _previous(root: Path) -> str | None:
    try:
        name = json.loads((root / LATEST).read_bytes().decode("utf-8")).get("dir")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and _STEP_DIR.fullmatch(name) else None


def clear_checkpoints(root: Path) -> None:
    """Remove what checkpointing wrote under ``root`` (a finished run's cleanup): ``latest.json``
    and our step folders; anything else (a file someone put there) stays, and so does ``root``
    then. A symlinked root is left alone."""
    root = Path(root)
    if root.is_symlink() or not root.is_dir():
        return
    for folder in root.glob("step-*"):
        if _ours(folder):
            shutil.rmtree(folder, ignore_errors=True)
    (root / LATEST).unlink(missing_ok=True)
    try:
        root.rmdir()
    except OSError:
        pass  # not empty: what is left is not ours


def save_checkpoint(root: Path, model, opt, sched, step: int, extra: dict) -> None:
    """Write a checkpoint of ``step`` under ``root``; ``extra`` holds loop state (history, ...):
    JSON values and tensors, nested in dicts, lists and tuples."""
    root = Path(root)
    check_root(root)
    ck = root / f"step-{step:07d}"
    ck.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors: dict[str, torch.Tensor] = {}
    tree = _split(_train_state(opt, sched, step, extra), tensors)
    atomic_save(ck / WEIGHTS, lambda tmp: save_file(state, tmp))
    atomic_save(ck / TENSORS, lambda tmp: save_file(tensors, tmp))
    atomic_write_json(ck / STATE, tree)
    sums = {f: sha256_file(ck / f) for f in (WEIGHTS, TENSORS, STATE)}
    previous = _previous(root)
    atomic_write_json(root / LATEST, {"step": step, "dir": ck.name, "sha256": sums})
    if previous is not None and previous != ck.name and _ours(root / previous):
        shutil.rmtree(root / previous, ignore_errors=True)


def _corrupt(root: Path, why: str) -> ModelError:
    return ModelError(f"the checkpoint under {root} cannot be used ({why}); delete {root} "
                      "to restart this run from its beginning.")


def _read_state(root: Path, latest: dict) -> dict:
    """The verified train state of ``latest``; raises ModelError naming what is wrong."""
    name = latest.get("dir") if isinstance(latest, dict) else None
    if not isinstance(name, str) or not _STEP_DIR.fullmatch(name):
        raise _corrupt(root, f"{LATEST} names {name!r}, not a step-NNNNNNN folder inside it")
    ck = root / name
    sums = latest.get("sha256")
    if sums is None:  # written before checksums: only the weights-only pickle format existed
        try:
            return torch.load(ck / LEGACY_STATE, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint of ours"
            raise _corrupt(root, f"{LEGACY_STATE} is unreadable or not plain tensors ({type(e).__name__})") from None
    if not isinstance(sums, dict) or set(sums) != {WEIGHTS, TENSORS, STATE}:
        raise _corrupt(root, f"{LATEST} does not list the checkpoint's files")
    for f, want in sums.items():
        if not (ck / f).is_file():
            raise _corrupt(root, f"{name}/{f} is missing")
        if sha256_file(ck / f) != want:
            raise _corrupt(root, f"{name}/{f} does not match its checksum")
    try:
        return _join(json.loads((ck / STATE).read_text()), load_file(str(ck / TENSORS)))
    except Exception as e:  # noqa: BLE001 - checksummed, so only a file we never wrote gets here
        raise _corrupt(root, f"its state files are unreadable ({type(e).__name__})") from None


def load_checkpoint(root: Path, model, opt, sched) -> tuple[int, dict] | None:
    """Restore the latest checkpoint under ``root`` into model/opt/sched and the RNGs.

    Returns (step, extra), or None when there is none; a damaged one raises ModelError.
    """
    root = Path(root)
    latest = root / LATEST
    check_root(root)
    if not latest.exists():
        return None
    try:
        meta = json.loads(latest.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        raise _corrupt(root, f"{LATEST} is not valid JSON") from None
    state = _read_state(root, meta)
    load_state(model, root / meta["dir"] / WEIGHTS)
    try:
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return int(state["step"]), state["extra"]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise _corrupt(root, f"its optimizer or schedule state does not fit this run ({type(e).__name__})") from None


def has_checkpoint(root: Path) -> bool:
    return (Path(root) / LATEST).exists()


# ------------------------------------------------------------------ append-only logs (timeline.jsonl)
def mark_jsonl(path: Path) -> dict:
    """Where an append-only JSONL log stands at a checkpoint: its length and the sha256 of its
    bytes, stored in the checkpoint's ``extra`` so a resume can trust exactly that prefix."""
    from interference.io import sha256_prefix
    n = Path(path).stat().st_size
    return {"offset": n, "sha256": sha256_prefix(path, n)}


def restore_jsonl(path: Path, mark: dict | int, at: str) -> None:
    """Cut the log back to ``mark`` (rows written after the checkpoint are recomputed), after
    checking that what stays is exactly what the checkpoint saw. A log that is missing, shorter
    than the mark, or changed before it cannot be repaired (its rows came from models that are
    gone): RunDirError, one sentence, nothing touched. ``at`` names the run and step for it."""
    from interference.io import RunDirError, sha256_prefix
    path = Path(path)
    offset, want = (mark, None) if isinstance(mark, int) else (int(mark["offset"]), mark["sha256"])
    refuse = f"so {at} cannot be resumed; delete that run directory to start it over"
    if not path.is_file():
        if offset == 0:
            path.write_text("")
            return
        raise RunDirError(f"{path} is missing, {refuse}.")
    if path.stat().st_size < offset:
        raise RunDirError(f"{path} is shorter than at the last checkpoint (truncated), {refuse}.")
    if want is not None and sha256_prefix(path, offset) != want:
        raise RunDirError(f"{path} was changed before the last checkpoint, {refuse}.")
    with open(path, "rb") as fh:
        head = fh.read(offset)
    try:
        lines = head.decode("utf-8").split("\n")
        ok = lines[-1] == "" and all(isinstance(json.loads(x), dict) for x in lines[:-1])
    except (UnicodeDecodeError, ValueError):
        ok = False
    if not ok:
        raise RunDirError(f"{path} holds rows that are not JSON before the last checkpoint, {refuse}.")
    with open(path, "r+b") as fh:
        fh.truncate(offset)
