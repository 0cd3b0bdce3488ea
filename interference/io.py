"""Atomic file writes, checksums, and the run-directory guards (claim, lock, seal).

Why: a run killed half-way must never leave a half-written JSON or checkpoint that a later run
trusts, two processes must never write one run directory at once, and a finished run that was
damaged afterwards (a file deleted, truncated, edited) must be noticed, not read. So:

- every write goes to a temporary file in the same directory and is renamed into place (the
  file then gets the mode the umask gives any new file, 0644 normally, not mkstemp's 0600);
- ``claim_run_dir`` takes an exclusive ``flock`` on ``<run>/.lock`` that the kernel drops when
  the process ends, however it ends, so a lock left by a killed process is never stale;
- a finished run is *sealed*: ``checksums.json`` lists the sha256 of every file it holds, and
  ``verify_run_dir`` names the first file that is missing or differs.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable


class RunDirError(RuntimeError):
    """An output directory that holds something else than the run we were asked to write."""


LOCK = ".lock"
CHECKSUMS = "checksums.json"
# Fault injection for the fault-injection tests (tests/test_faults*.py): with
# INTERFERENCE_FAULT="kill-before:<path suffix>[:<n>]" the process SIGKILLs itself when the n-th
# atomic write of a file whose path ends with the suffix has its temporary file written but not
# yet renamed (a kill mid-write); "kill-after:..." right after that rename. Unset, it costs one
# dictionary lookup per write.
FAULT_ENV = "INTERFERENCE_FAULT"
_fault_counts: dict[str, int] = {}


def _fault(moment: str, path: Path) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    when, _, rest = spec.partition(":")
    suffix, _, n = rest.partition(":")
    if when != moment or not str(path).endswith(suffix):
        return
    _fault_counts[spec] = _fault_counts.get(spec, 0) + 1
    if _fault_counts[spec] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: str | Path, write: Callable[[str], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # like any other new file; mkstemp makes it 0600
        _fault("kill-before", path)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if _disk_full(e):
            raise disk_full(path) from None
        raise
    _fault("kill-after", path)


def _disk_full(e: BaseException) -> bool:
    """ENOSPC/EDQUOT, also from safetensors, whose Rust error is no OSError ("No space left on
    device (os error 28)")."""
    import errno
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return type(e).__name__ == "SafetensorError" and ("os error 28" in str(e) or "No space left" in str(e))


def disk_full(path: Path) -> OSError:
    """The OSError a full disk becomes: names the file and the space left, and says that what was
    written before is kept (the temporary file is gone; the last checkpoint stays resumable)."""
    import errno
    import shutil
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return OSError(errno.ENOSPC, f"No space left on device, {free}", str(path))


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


# ------------------------------------------------------------------ missing numbers in JSON
# One policy for every JSON file the package writes (run metrics, timelines, cells, verdicts,
# figure data). A metric over an empty set (a forgetting rate with no watched facts, a plasticity
# with no new facts) is nan in memory, where the pure metric functions skip it. On disk it is
# `null`: Python's json would write the token NaN, which is not JSON (jq, JavaScript and strict
# parsers refuse the file) and reads back as a number that silently poisons means. So the writers
# below turn nan/inf into null and then refuse (allow_nan=False) anything non-finite that got past;
# where a rate can be empty its writer also records the count it is over (``n``: 0) or a reason.
# Readers take a saved metric through ``number`` (null -> nan), so it stays missing, never 0.
def json_ready(o: Any) -> Any:
    """``o`` as it reads back from its JSON: nan/inf floats as None, numpy scalars as Python
    numbers, tuples as lists, dict keys as the strings JSON makes of them (1 -> "1")."""
    import numpy as np
    if isinstance(o, dict):
        return {k if isinstance(k, str) or not isinstance(k, (int, float, type(None))) else json.dumps(json_ready(k)):
                json_ready(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_ready(v) for v in o]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    return o


def number(x: Any) -> float:
    """A saved metric as a float: null (missing) and non-numbers are nan, never 0."""
    try:
        return float(x) if x is not None and not isinstance(x, (str, bool)) else math.nan
    except (TypeError, ValueError):
        return math.nan


def json_text(obj: Any, **kw) -> str:
    """Standard JSON of ``obj`` under the policy above (``kw``: indent, sort_keys)."""
    return json.dumps(json_ready(obj), default=_default, allow_nan=False, **kw)


def json_line(obj: Any) -> str:
    """One JSONL line (timelines, SliCK tables), under the same policy."""
    return json_text(obj) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json_text(obj, indent=2, sort_keys=True) + "\n")


def atomic_save(path: str | Path, save: Callable[[str], None]) -> None:
    """Run ``save(tmp_path)`` (e.g. safetensors.save_file) and rename into place."""
    _atomic(path, save)


def _default(o: Any) -> Any:
    if hasattr(o, "to_dict"):
        return json_ready(o.to_dict())
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if hasattr(o, "item"):
        return json_ready(o.item())
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def config_hash(obj: Any, n: int = 12) -> str:
    """Stable short hash of a JSON-serialisable config (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, default=_default).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_prefix(path: str | Path, n: int) -> str:
    """sha256 of the first ``n`` bytes of a file (a JSONL log up to a checkpoint)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while n > 0:
            block = fh.read(min(n, 1 << 20))
            if not block:
                break
            h.update(block)
            n -= len(block)
    return h.hexdigest()


# ------------------------------------------------------------------ JSON with a checksum inside
def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_default).encode()).hexdigest()


def write_checked_json(path: str | Path, obj: dict) -> None:
    """Write ``obj`` (a dict) with a ``sha256`` field over its canonical JSON, atomically."""
    obj = json.loads(json_text(obj))  # the digest is over what is written: nan already null
    atomic_write_json(path, {**obj, "sha256": _digest(obj)})


def read_checked_json(path: str | Path, legacy_ok: bool = True) -> tuple[dict | None, str]:
    """(payload, "") of a file written by ``write_checked_json``, or (None, why it cannot be
    trusted). A dict without a ``sha256`` field (written before checksums existed) is returned
    as is when ``legacy_ok``."""
    try:
        obj = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None, "it is missing"
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except json.JSONDecodeError:
        return None, "it is not valid JSON"
    except OSError as e:
        return None, f"it cannot be read ({e.strerror})"
    if not isinstance(obj, dict):
        return None, f"it holds a JSON {type(obj).__name__}, not an object"
    if "sha256" not in obj:
        return (obj, "") if legacy_ok else (None, "it has no checksum")
    want = obj.pop("sha256")
    if want != _digest(obj):
        return None, "its content does not match its checksum"
    return obj, ""


# ------------------------------------------------------------------ one writer per run directory
_held: dict[str, int] = {}  # resolved run dir -> fd of its lock file, for the life of the process


def _lock_path(out: Path) -> Path:
    return out / LOCK


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
        return f"process {pid}" if pid.isdigit() else "another process"
    except OSError:
        return "another process"


def check_not_busy(out: str | Path) -> None:
    """Raise RunDirError if another live process holds ``out``'s lock; touches nothing."""
    out = Path(out)
    lock = _lock_path(out)
    if str(out.resolve()) in _held or not lock.is_file():
        return
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunDirError(f"{out} is being written by {_holder(lock)} right now; wait for it to finish "
                          "or choose another --out.") from None
    finally:
        os.close(fd)


def lock_run_dir(out: str | Path, wait: bool = False) -> None:
    """Take (or keep, if this process has it) the exclusive lock of run directory ``out``.

    The lock lives until ``release_run_dir`` or the end of the process; ``wait`` blocks until a
    writer in another process is done instead of refusing (for shared cache entries).
    """
    out = Path(out)
    key = str(out.resolve())
    if key in _held:
        return
    fd = os.open(_lock_path(out), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not wait:
            os.close(fd)
            raise RunDirError(f"{out} is being written by {_holder(_lock_path(out))} right now; wait for it "
                              "to finish or choose another --out.") from None
        print(f"waiting for {_holder(_lock_path(out))} to finish writing {out} ...", file=sys.stderr)
        fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = fd


def release_run_dir(out: str | Path) -> None:
    fd = _held.pop(str(Path(out).resolve()), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def _check_claimable(out: Path, config: dict, what: str) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file, not a directory; choose another --out.")
    cfg_path = out / "config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunDirError(f"{cfg_path} is not valid JSON, so {out} cannot be resumed; "
                              "choose another --out or delete that directory.") from None
        if config_hash(old) != config_hash(config):
            raise RunDirError(
                f"{out} already holds a different {what} (config hash {config_hash(old)} vs "
                f"{config_hash(config)}); choose another --out or delete that directory.")
    elif out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise RunDirError(f"{out} is not empty and holds no config.json, so it is not a {what} of ours; "
                          "choose another --out.")


def real_out(out: str | Path) -> Path:
    """``out`` with symlinks and ``..`` resolved, before anything is created: ``CACHE/x/../base-H``
    is ``CACHE/base-H`` (and is refused there as another run) rather than a new ``x/`` made on
    the way; an empty path, which names the current directory, is refused."""
    if not str(out).strip():
        raise RunDirError("an empty output path names the current directory; give --out a directory name.")
    return Path(os.path.realpath(out))


def claim_run_dir(out: str | Path, config: dict, what: str = "run", wait: bool = False) -> Path:
    """Make ``out`` ours: empty/new, or holding a run with the same config (to resume).

    Raises RunDirError, touching nothing, if it is a file, holds a different run or unrelated
    files, or another process is writing it (``wait``: wait for that process instead). Once
    claimed, the directory is locked for this process and its seal (``checksums.json``) is
    removed: whatever it certified is about to change; except when ``wait`` found the process it
    waited for had finished the run (sealed and verifying): then the seal stays, and the caller's
    ``finished_run`` check finds the run done (release the lock then).
    """
    out = Path(out)
    _check_claimable(out, config, what)  # read-only: a refusal leaves no trace
    out.mkdir(parents=True, exist_ok=True)
    lock_run_dir(out, wait=wait)
    _check_claimable(out, config, what)  # again under the lock: the holder may have written it
    if wait and (out / CHECKSUMS).exists() and not verify_run_dir(out, ()):
        # the process we waited for finished this very run: keep its seal, so the caller's
        # finished-run check sees it (unsealing it here made every waiter train the run again)
        return out
    (out / CHECKSUMS).unlink(missing_ok=True)
    atomic_write_json(out / "config.json", config)
    return out


# ------------------------------------------------------------------ sealed (finished) runs
def _files_under(out: Path, names: Iterable[str]) -> list[str]:
    files = []
    for name in names:
        p = out / name
        if p.is_dir():
            # dot files are ours in passing (temporaries a kill left behind), not results
            files += sorted(str(f.relative_to(out)) for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():  # a name this run did not write (a rank that saves no model) is left out
            files.append(name)
    return files


def seal_run_dir(out: str | Path, names: Iterable[str]) -> None:
    """Record the sha256 of every file named (folders: every file inside) in ``checksums.json``,
    written last: a run is finished when its seal exists and verifies."""
    out = Path(out)
    atomic_write_json(out / CHECKSUMS, {f: sha256_file(out / f) for f in _files_under(out, names)})


def verify_run_dir(out: str | Path, required: Iterable[str]) -> str:
    """'' if ``out`` is a sealed run whose files all match their checksums, else why not.

    A run finished before seals existed (no ``checksums.json`` and no ``.lock``) passes when
    every ``required`` file is present and non-empty.
    """
    out = Path(out)
    seal = out / CHECKSUMS
    if not seal.exists():
        if (out / LOCK).exists():
            return "it was not finished (no checksums.json)"
        for name in required:
            p = out / name
            if not p.exists() or (p.is_file() and p.stat().st_size == 0):
                return f"{name} is missing or empty"
        return ""
    try:
        sums = json.loads(seal.read_bytes().decode("utf-8"))
        assert isinstance(sums, dict) and all(isinstance(v, str) for v in sums.values())
    except (OSError, ValueError, AssertionError):
        return f"{CHECKSUMS} is unreadable"
    for name in required:
        if not any(f == name or f.startswith(name.rstrip("/") + "/") for f in sums):
            return f"{name} is not covered by {CHECKSUMS}"
    for name, want in sums.items():
        p = out / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            return f"{CHECKSUMS} names {name!r}, outside the run"
        if not p.is_file():
            return f"{name} is missing"
        if sha256_file(p) != want:
            return f"{name} does not match its checksum"
    return ""


def finished_run(out: str | Path, config: dict, required: Iterable[str], what: str, quiet: bool = False) -> bool:
    """True if ``out`` holds a finished run of ``config`` whose files verify. A finished run of
    this config that fails verification is reported on stderr (unless ``quiet``): the caller
    computes it again, so a damaged result is never read."""
    out = Path(out)
    if not (out / "metrics.json").is_file() or not (out / "config.json").is_file():
        return False
    try:
        same = config_hash(json.loads((out / "config.json").read_bytes().decode("utf-8"))) == config_hash(config)
    except (OSError, ValueError):
        return False
    if not same:
        return False
    why = verify_run_dir(out, required)
    if why and not quiet:
        print(f"note: the finished {what} in {out} is damaged ({why}); computing it again.", file=sys.stderr)
    return not why


def check_fields(cls, d: dict, error: type[Exception], what: str, noun: str = "field") -> dict:
    """Refuse keys that are not fields of dataclass ``cls`` (a typo in a JSON config must not be
    silently ignored); returns ``d`` unchanged."""
    import dataclasses

    if not isinstance(d, dict):
        raise error(f"a {what} must be a JSON object of {noun}s, not {type(d).__name__}.")
    names = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(d) - names)
    if extra:
        raise error(f"unknown {what} {noun}(s) {extra}; valid {noun}s are {sorted(names) or 'none'}.")
    return d


def check_finite(obj: Any, error: type[Exception], what: str, where: str = "") -> None:
    """Refuse NaN and infinities anywhere in a (nested) config: a NaN learning rate or KL weight
    trains silently into NaN weights."""
    import math

    if isinstance(obj, dict):
        for k, v in obj.items():
            check_finite(v, error, what, f"{where}.{k}" if where else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_finite(v, error, what, f"{where}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        raise error(f"{what} {where or 'value'} is {obj}; use a finite number.")


def save_figure(fig, out: str | Path, stem: str, dpi: int | None = None) -> list[Path]:
    """PNG and PDF of a matplotlib ``fig`` as ``out/stem.{png,pdf}``, each written atomically, then
    the figure closed: the one figure writer of the hypothesis plots and the paper figures (``dpi``
    None keeps matplotlib's, as the figures do; the hypothesis plots ask for 130)."""
    import matplotlib.pyplot as plt
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out / f"{stem}.{ext}"
        kw = {} if dpi is None else {"dpi": dpi}
        if ext == "pdf":  # no creation date: a figure redrawn from the same saved numbers is the same file
            kw["metadata"] = {"CreationDate": None}
        atomic_save(p, lambda tmp, e=ext: fig.savefig(tmp, format=e, bbox_inches="tight", **kw))
        paths.append(p)
    plt.close(fig)
    return paths
