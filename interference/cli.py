"""What every command line shares: one flag vocabulary, and bad input is one sentence on stderr and exit code 2.

Why one place: a traceback tells a user nothing they can act on, and each CLI repeating its own
try/except drifted (one caught ValueError, another did not). ``run_main`` catches the package's
known error types (bad configs and flags, refused run directories, unusable models, and OS
errors such as a read-only or full disk) and prints ``error: <message>``; anything else is a
bug and keeps its traceback.

The vocabulary every entry point (finetune, pretrain, run_hypothesis, forecast, figures) shares:

- ``--seed N`` is always *one seed value* (the model and data-order seed of one run);
  ``--seeds N`` is always *a count*: seeds 0 .. N-1, one run each (grids, evaluations).
- ``--device auto|cpu|cuda[:i]`` and ``--no-progress`` on every command (``--progress``, the
  forecast's old opt-in, is still accepted and changes nothing: progress is on by default).
- ``--config FILE``: a JSON (or, with PyYAML installed, YAML) mapping of flag names (``lr``,
  ``batch-size`` or ``batch_size``) to values; flags given on the command line override it. A key
  that is not a flag of the command is refused, naming the valid ones.
- ``--help`` shows each default and returns in well under 2 s: parsers import no torch,
  transformers or transformer_lens (``benchmarks/cli_help.py`` times them).
- Runs resume by themselves: a command re-run on the same output directory continues an
  interrupted run from its last checkpoint (``--resume`` is still accepted and is the default).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default, as ``ArgumentDefaultsHelpFormatter`` does, but not
    the uninformative ones (None, False of a switch, an empty list) and not twice when the help
    text already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (d is None or d is False or d == [] or d is argparse.SUPPRESS or "%(default)" in text
                or "default" in text or not (action.option_strings or action.nargs in ("?", "*"))):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """argparse with the house conventions: one-sentence errors with exit 2, defaults in
    ``--help``, and ``--config FILE`` (flags override the file) on every command."""

    def __init__(self, *args, **kw):
        kw.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kw)
        self.add_argument("--config", metavar="FILE",
                          help="JSON or YAML file of flag values (keys as the flags without dashes); "
                               "flags on the command line override it")

    def error(self, message: str):
        print(f"error: {message.rstrip('.')}.", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)

    def parse_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        if not any(a in ("-h", "--help") for a in argv):
            pre = argparse.ArgumentParser(add_help=False)
            pre.add_argument("--config")
            known, _ = pre.parse_known_args(argv)
            if known.config:
                self.apply_config(known.config)
        return super().parse_args(argv, namespace)

    def apply_config(self, path: str) -> None:
        """Use the values of a config file as this parser's defaults (so flags still override)."""
        values = read_config_file(path, self.error)
        by_dest = {a.dest: a for a in self._actions if a.dest not in ("help", "config")}
        for key, value in values.items():
            dest = str(key).replace("-", "_")
            action = by_dest.get(dest)
            if action is None:
                self.error(f"{path}: {key!r} is not a flag of {self.prog}; valid keys are "
                           f"{', '.join(sorted(by_dest))}")
            if isinstance(action, argparse._AppendAction) and not isinstance(value, list):
                value = [value]
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) and not isinstance(value, bool):
                self.error(f"{path}: {key!r} is a switch; give it true or false, not {value!r}")
            if action.choices is not None and not isinstance(value, list) and value not in action.choices:
                self.error(f"{path}: {key!r} is {value!r}; choose one of {', '.join(map(str, action.choices))}")
            if action.type is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)  # argparse runs `type` on string defaults: the file gets the flag's checks
            action.default = value
            action.required = False
            if not action.option_strings:  # a positional given by the file may be left off the command line
                action.nargs = "?"


def read_config_file(path: str, error: Callable[[str], None]) -> dict:
    """The mapping in a ``--config`` file: JSON, or YAML (``.yaml``/``.yml``) when PyYAML is installed."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        error(f"cannot read --config {path} ({e.strerror or e}); pass an existing JSON or YAML file")
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            error(f"--config {path} is YAML but PyYAML is not installed; `pip install pyyaml` or pass JSON")
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as e:
            error(f"--config {path} is not valid YAML ({str(e).splitlines()[0]}); fix it")
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            error(f"--config {path} is not valid JSON ({e.msg} at line {e.lineno}); fix it")
    if not isinstance(values, dict):
        error(f"--config {path} must hold a mapping of flag names to values, not a {type(values).__name__}")
    return values


def add_common(ap: argparse.ArgumentParser, device: bool = True) -> None:
    """``--device`` and ``--no-progress`` (with the old ``--progress`` accepted, doing nothing)."""
    if device:
        ap.add_argument("--device", default="auto", type=device_name,
                        help="auto (CUDA when available, else the CPU), cpu, cuda or cuda:N")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)  # old opt-in; progress is the default


def add_seed(ap: argparse.ArgumentParser, what: str, default: int | None = 0) -> None:
    ap.add_argument("--seed", type=seed_int, default=default, help=f"one seed value: {what}")


def add_seeds(ap: argparse.ArgumentParser, what: str, default: int | None = None) -> None:
    ap.add_argument("--seeds", type=int, default=default, help=f"how many seeds (0 .. N-1): {what}")


def add_resume(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--resume", action="store_true",
                    help="kept for old command lines: an interrupted run in --out always resumes from its last checkpoint")


def add_real_arguments(ap) -> None:
    """The flags every entry point shares for a real model and real data."""
    g = ap.add_argument_group("real model and data (instead of the synthetic world)")
    g.add_argument("--model", help="a local Hugging Face model directory (GPT-2, Llama, Qwen2, Mistral, GPT-NeoX)")
    g.add_argument("--data", help="an EntityQuestions directory (P*.train|dev|test.json) or one JSONL file with "
                                  "subject, relation, question, answers")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="let the model directory run its own Python code (off by default)")
    g.add_argument("--shots", type=int, help="SliCK: exemplars per prompt (default 4)")
    g.add_argument("--exemplar-sets", type=int, help="SliCK: random exemplar sets per fact (default 10)")
    g.add_argument("--samples", type=int, help="SliCK: samples at temperature 0.5 per set (default 16)")
    g.add_argument("--max-per-relation", type=int, help="SliCK: categorise at most this many facts per relation")
    g.add_argument("--min-known-share", type=float, help="keep relations with at least this share Known (default 0.3)")


def early_parse(build: Callable[[], argparse.ArgumentParser], argv: list[str] | None = None) -> None:
    """Parse the command line with a torch-free parser before a heavy module finishes importing,
    so ``--help`` and bad flags answer in a fraction of a second; a good command line passes on."""
    build().parse_args(argv)


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
