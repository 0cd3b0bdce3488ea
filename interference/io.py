"""Atomic file writes and run-directory guards.

Why: a run killed half-way must never leave a half-written JSON or checkpoint that a later run
trusts. Every write goes to a temporary file in the same directory and is renamed into place.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


class RunDirError(RuntimeError):
    """An output directory that holds something else than the run we were asked to write."""


def _atomic(path: str | Path, write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n")


def atomic_save(path: str | Path, save: Callable[[str], None]) -> None:
    """Run ``save(tmp_path)`` (e.g. safetensors.save_file) and rename into place."""
    _atomic(path, save)


def _default(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def config_hash(obj: Any, n: int = 12) -> str:
    """Stable short hash of a JSON-serialisable config (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, default=_default).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def claim_run_dir(out: str | Path, config: dict, what: str = "run") -> Path:
    """Make ``out`` ours: empty/new, or holding a run with the same config (to resume).

    Raises RunDirError, touching nothing, if it holds a different run or unrelated files.
    """
    out = Path(out)
    cfg_path = out / "config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            raise RunDirError(f"{cfg_path} is not valid JSON, so {out} cannot be resumed; "
                              "choose another --out or delete that directory.") from None
        if config_hash(old) != config_hash(config):
            raise RunDirError(
                f"{out} already holds a different {what} (config hash {config_hash(old)} vs "
                f"{config_hash(config)}); choose another --out or delete that directory.")
    elif out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise RunDirError(f"{out} is not empty and holds no config.json, so it is not a {what} of ours; "
                          "choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg_path, config)
    return out


def check_fields(cls, d: dict, error: type[Exception], what: str, noun: str = "field") -> dict:
    """Refuse keys that are not fields of dataclass ``cls`` (a typo in a JSON config must not be
    silently ignored); returns ``d`` unchanged."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(d) - names)
    if extra:
        raise error(f"unknown {what} {noun}(s) {extra}; valid {noun}s are {sorted(names) or 'none'}.")
    return d
