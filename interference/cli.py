"""What every command line shares: bad input is one sentence on stderr and exit code 2.

Why one place: a traceback tells a user nothing they can act on, and each CLI repeating its own
try/except drifted (one caught ValueError, another did not). ``run_main`` catches the package's
known error types (bad configs and flags, refused run directories, unusable models, and OS
errors such as a read-only or full disk) and prints ``error: <message>``; anything else is a
bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)


class Parser(argparse.ArgumentParser):
    """argparse with the house error format: one sentence, exit 2 (argparse prints usage too)."""

    def error(self, message: str):
        print(f"error: {message}.", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def finite_float(text: str) -> float:
    """argparse type: a float that is neither NaN nor infinite (``--lr nan`` trains into NaN)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def out_dir(text: str) -> str:
    """argparse type: an output directory that names something (``--out ''`` would write the run
    into the current directory, beside whatever is there)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names the current directory; give --out a directory name")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} holds a NUL character, which no path may hold")
    return text


MAX_SEED = 2**32 - 1  # what every RNG seeded here (torch, numpy, random) takes without overflowing


def seed_int(text: str) -> int:
    """argparse type: a seed in [0, 2**32) (``--seed 2**70`` overflowed inside torch, vaguely)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {text} is outside 0..{MAX_SEED}")
    return v


def device_name(text: str) -> str:
    """argparse type: auto, or a device torch knows (cpu, cuda, cuda:1, mps)."""
    if text == "auto":
        return text
    import torch
    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu or cuda") from None
    return text


def known_errors() -> tuple[type[BaseException], ...]:
    from interference.io import RunDirError
    from interference.models import ModelError
    # WorldConfigError, SFTDataError, MethodError and the CLIs' usage errors are ValueErrors
    return (ValueError, RunDirError, ModelError, OSError)


def one_line(e: BaseException) -> str:
    import errno
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" {e.filename}" if e.filename else ""
        return (f"cannot write{where} ({e.strerror}); what was written before it is kept, so free some space "
                "and run the same command again to continue.")
    if isinstance(e, OSError) and e.strerror:
        where = f" {e.filename}" if e.filename else ""
        return (f"cannot write or read{where} ({e.strerror}); check that the disk has space and the "
                "output directory is writable.")
    return " ".join(str(e).split())


RESUME_HINT = "run the same command again to resume from the last checkpoint"


def run_main(body: Callable[[], int], resume_hint: str = RESUME_HINT) -> int:
    """``body()``'s exit code, or 2 after printing one sentence for a known error. ``resume_hint``
    says how to continue after Ctrl-C (fine-tuning needs ``--resume``; the others resume by
    themselves)."""
    try:
        return body()
    except known_errors() as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"error: interrupted; {resume_hint}.", file=sys.stderr)
        return EXIT_INTERRUPTED
